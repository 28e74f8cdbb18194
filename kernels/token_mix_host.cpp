// The token-shift mix kernels (kernels/token_mix_kernels.cuh) for the host; the declarations are
// kernels/token_mix_host.h.
#include "kernels/token_mix_host.h"

#include "kernels/token_mix_kernels.cuh"
