// The cross-entropy kernels (kernels/cross_entropy_kernels.cuh) for the GPU; the declarations are
// kernels/cross_entropy_cuda.h.
#include "kernels/cross_entropy_cuda.h"

#include "kernels/cross_entropy_kernels.cuh"
