// The token-shift mix kernels (kernels/token_mix_kernels.cuh) for the GPU; the declarations are
// kernels/token_mix_cuda.h.
#include "kernels/token_mix_cuda.h"

#include "kernels/token_mix_kernels.cuh"
