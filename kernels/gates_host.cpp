// The gate and activation kernels (kernels/gates_kernels.cuh) for the host; the declarations are
// kernels/gates_host.h.
#include "kernels/gates_host.h"

#include "kernels/gates_kernels.cuh"
