#include "rwkv/layers.h"

namespace rwkv {

LinearNoBiasImpl::LinearNoBiasImpl(int64_t in, int64_t out, const torch::TensorOptions& options) {
  weight = register_parameter("weight", torch::empty({out, in}, options));
}

torch::Tensor LinearNoBiasImpl::forward(const torch::Tensor& x) {
  return torch::linear(x, weight.to(x.scalar_type()));
}

LayerNormImpl::LayerNormImpl(int64_t dim, const torch::TensorOptions& options) {
  weight = register_parameter("weight", torch::empty({dim}, options));
  bias = register_parameter("bias", torch::empty({dim}, options));
}

torch::Tensor LayerNormImpl::forward(const torch::Tensor& x) {
  return torch::layer_norm(x, {weight.size(0)}, weight.to(x.scalar_type()),
                           bias.to(x.scalar_type()), /*eps=*/1e-5);
}

EmbeddingImpl::EmbeddingImpl(int64_t vocab, int64_t dim, const torch::TensorOptions& options) {
  weight = register_parameter("weight", torch::empty({vocab, dim}, options));
}

torch::Tensor EmbeddingImpl::forward(const torch::Tensor& tokens) {
  TORCH_CHECK(tokens.scalar_type() == torch::kLong, "token ids must be int64, got ",
              tokens.scalar_type());
  return torch::embedding(weight, tokens);
}

}  // namespace rwkv
