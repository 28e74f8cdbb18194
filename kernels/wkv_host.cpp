// The WKV kernels (kernels/wkv_kernels.cuh) for the host; the declarations are kernels/wkv_host.h.
#include "kernels/wkv_host.h"

#include "kernels/wkv_kernels.cuh"
