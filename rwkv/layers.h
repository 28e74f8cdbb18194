#pragma once
// The leaf layers of the model (Linear without bias, LayerNorm, Embedding). Unlike torch::nn's,
// they create their parameters with the caller's TensorOptions and leave them uninitialised
// (torch::empty): the model can then be built on the meta device (`rwkv info` for 14B allocates
// nothing) or directly on a GPU, and rwkv/init.h fills every tensor by the reference rules.
// torch::nn::Linear would allocate and randomise on the CPU in its constructor.
//
// Forward casts the parameters to the input's dtype, so bf16 activations also work with fp32
// parameters (a no-op when the dtypes already match, as in a bf16 model).
#include <torch/torch.h>

namespace rwkv {

// y = x Wᵀ with W (out, in), as torch.nn.Linear(in, out, bias=False): every projection of RWKV-4
// is bias-free (rwkv/README.md "Forward pass").
class LinearNoBiasImpl : public torch::nn::Module {
 public:
  LinearNoBiasImpl(int64_t in, int64_t out, const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor weight;
};
TORCH_MODULE(LinearNoBias);

// LayerNorm over the last dimension with weight and bias, eps 1e-5 (rwkv/README.md "Forward pass").
class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t dim, const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor weight, bias;
};
TORCH_MODULE(LayerNorm);

// Token ids (any shape, int64) → rows of weight (vocab, dim), in weight's dtype.
class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(int64_t vocab, int64_t dim, const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& tokens);

  torch::Tensor weight;
};
TORCH_MODULE(Embedding);

}  // namespace rwkv
