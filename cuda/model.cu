// Kernels of the built-in policy (core/model_args.h): embedding-bag forward and backward, token sampling.
//
// Forward: one block per row, threads across V (coalesced): reads F weight rows + the bias (4(F+1)V bytes),
// writes 4V bytes. Backward: the (row, feature) pairs are bucketed by feature id on the host (the ids are a
// small [R, F] tensor), then one block per distinct id adds its rows' gradients in increasing row order:
// deterministic, no atomics; reads 4V bytes per pair and read-modify-writes 4V per id. Bias: one thread per
// column summing the rows in order.
// Sampling: one thread per row running the row sampler of core/sampling.h, the very code the CPU backend runs
// (in double: inverse CDF in id order, or over the top-p nucleus sorted by probability, ties by id, from the
// same counter-based hash), so both backends draw the same tokens.
#include "core/sampling.h"
#include "launchers.h"
#include "row_softmax.cuh"

namespace grpo::GRPO_CUDA_NS {

namespace {

__global__ void __launch_bounds__(kBlock) embeddingForwardKernel(EmbeddingForwardArgs a) {
  const int64_t r = blockIdx.x;
  const int32_t* ids = a.ids + r * a.features;
  // Every thread checks the same ids, so the whole block agrees on whether to leave.
  int64_t bad = -1;
  for (int64_t f = 0; f < a.features; f++) {
    if (ids[f] < -1 || ids[f] >= a.H) { bad = r * a.features + f; break; }
  }
  if (threadIdx.x == 0) a.badIndex[r] = bad;
  if (bad >= 0) return;
  float* out = a.out + r * a.V;
  for (int64_t v = threadIdx.x; v < a.V; v += blockDim.x) {
    float acc = a.bias ? a.bias[v] : 0.0f;
    for (int64_t f = 0; f < a.features; f++) {
      if (ids[f] >= 0) acc += a.weight[static_cast<int64_t>(ids[f]) * a.V + v];
    }
    out[v] = acc;
  }
}

__global__ void __launch_bounds__(kBlock) embeddingBackwardKernel(EmbeddingBackwardArgs a) {
  const int64_t e = blockIdx.x;
  float* gw = a.gradWeight + static_cast<int64_t>(a.featureOf[e]) * a.V;
  const int64_t begin = a.rowStart[e], end = a.rowStart[e + 1];
  for (int64_t v = threadIdx.x; v < a.V; v += blockDim.x) {
    float acc = gw[v];
    for (int64_t i = begin; i < end; i++) acc += a.grad[static_cast<int64_t>(a.rowList[i]) * a.V + v];
    gw[v] = acc;
  }
}

__global__ void __launch_bounds__(kBlock) biasBackwardKernel(EmbeddingBackwardArgs a) {
  const int64_t v = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (v >= a.V) return;
  float acc = a.gradBias[v];
  for (int64_t r = 0; r < a.rows; r++) {
    if (!a.mask || a.mask[r]) acc += a.grad[r * a.V + v];
  }
  a.gradBias[v] = acc;
}

// x_j of one row, widened to double, for the shared row sampler (core/sampling.h).
template <typename T>
struct RowLogits {
  const T* row;
  __device__ __forceinline__ double operator()(int64_t j) const { return static_cast<double>(toFloat(row[j])); }
};

constexpr int kSampleBlock = 32;  // one thread per row does O(V) serial work: small blocks spread rows over SMs

template <typename T>
__global__ void __launch_bounds__(kSampleBlock) sampleKernel(SampleArgs a) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= a.rows) return;
  const int64_t base = r * a.V;
  const RowLogits<T> logit{static_cast<const T*>(a.logits) + base};
  const SampleParams params{a.invT, a.topP, a.greedy};
  const double u = a.greedy ? 0.0 : rowUniform(a.seed, a.step, static_cast<uint32_t>(a.streams ? a.streams[r] : r));
  a.status[r] = sampleRow(logit, a.V, params, u, a.p + base, a.order ? a.order + base : nullptr, &a.tokens[r], &a.logp[r]);
}

}  // namespace

void launchEmbeddingForward(const EmbeddingForwardArgs& a, cudaStream_t stream) {
  if (a.rows == 0) return;
  check(grpoLaunch(embeddingForwardKernel, dim3(static_cast<unsigned>(a.rows)), dim3(kBlock), 0, stream, a),
        "the embedding-bag forward kernel launch");
}

void launchEmbeddingBackward(const EmbeddingBackwardArgs& a, cudaStream_t stream) {
  if (a.entries > 0) {
    check(grpoLaunch(embeddingBackwardKernel, dim3(static_cast<unsigned>(a.entries)), dim3(kBlock), 0, stream, a),
          "the embedding-bag backward kernel launch");
  }
  if (a.gradBias && a.V > 0) {
    check(grpoLaunch(biasBackwardKernel, dim3(static_cast<unsigned>((a.V + kBlock - 1) / kBlock)), dim3(kBlock), 0, stream, a),
          "the bias backward kernel launch");
  }
}

void launchSample(const SampleArgs& a, cudaStream_t stream) {
  if (a.rows == 0) return;
  const dim3 grid(static_cast<unsigned>((a.rows + kSampleBlock - 1) / kSampleBlock)), block(kSampleBlock);
  cudaError_t e = cudaSuccess;
  switch (a.dtype) {
    case DType::BF16: e = grpoLaunch(sampleKernel<__nv_bfloat16>, grid, block, 0, stream, a); break;
    case DType::F16: e = grpoLaunch(sampleKernel<__half>, grid, block, 0, stream, a); break;
    default: e = grpoLaunch(sampleKernel<float>, grid, block, 0, stream, a); break;
  }
  check(e, "the sampling kernel launch");
}

}  // namespace grpo::GRPO_CUDA_NS
