#include "rwkv/token_shift.h"

namespace rwkv {

torch::Tensor token_shift(const torch::Tensor& x, const torch::Tensor& prev) {
  TORCH_CHECK(x.dim() == 3, "token_shift expects (B, T, D), got ", x.sizes());
  const int64_t T = x.size(1);
  const torch::Tensor first = prev.defined()
                                  ? prev.to(x.scalar_type()).reshape({x.size(0), 1, x.size(2)})
                                  : torch::zeros({x.size(0), 1, x.size(2)}, x.options());
  return torch::cat({first, x.narrow(1, 0, T - 1)}, 1);
}

torch::Tensor time_mix(const torch::Tensor& x, const torch::Tensor& xx, const torch::Tensor& mu) {
  const torch::Tensor m = mu.to(x.scalar_type());
  return x * m + xx * (1 - m);
}

}  // namespace rwkv
