// Plain C++ descriptions of one call of the linear op and of its backward (built from JavaScript values on the
// main thread by csrc/napi/linear.cc, run by a backend on a worker thread). Nothing here is CPU-specific.
//
// Layouts are PyTorch's and safetensors': x [N, K] (any leading shape flattened into N), W [M, K], y [N, M].
// x, W (and dy) share one compute dtype, f32 or bf16; every sum over K (or N) is accumulated in f32.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace grpo {

// y = x · Wᵀ (+ b). bias: [M], f32 or bf16, optional. out: [..., M] in outDtype (f32 or bf16), allocated by
// the binding; the sum is rounded once to outDtype after the bias is added.
struct LinearCall {
  TensorRef x, weight, bias;
  TensorRef out;
  int64_t N = 0, K = 0, M = 0;
};

// The backward of y = x · Wᵀ + b for an upstream gradient dy [N, M] (the compute dtype):
//   gradInput   = dy · W          [N, K], a new tensor in the compute dtype (undefined: not computed)
//   gradWeight += dyᵀ · x         [M, K], f32 or bf16, accumulated in place (undefined: not computed)
//   gradBias   += Σ_n dy[n, :]    [M],    f32 or bf16, accumulated in place (undefined: not computed)
// Each accumulation adds the f32 (or, for gradBias, double) sum to the stored value and rounds once.
struct LinearBackwardCall {
  TensorRef gradOutput, x, weight;
  TensorRef gradInput, gradWeight, gradBias;
  int64_t N = 0, K = 0, M = 0;
};

}  // namespace grpo
