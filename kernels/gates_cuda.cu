// The gate and activation kernels (kernels/gates_kernels.cuh) for the GPU; the declarations are
// kernels/gates_cuda.h.
#include "kernels/gates_cuda.h"

#include "kernels/gates_kernels.cuh"
