// The WKV kernels (kernels/wkv_kernels.cuh) for the GPU; the declarations are kernels/wkv_cuda.h.
#include "kernels/wkv_cuda.h"

#include "kernels/wkv_kernels.cuh"
