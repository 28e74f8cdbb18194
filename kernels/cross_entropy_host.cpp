// The cross-entropy kernels (kernels/cross_entropy_kernels.cuh) for the host; the declarations are
// kernels/cross_entropy_host.h.
#include "kernels/cross_entropy_host.h"

#include "kernels/cross_entropy_kernels.cuh"
