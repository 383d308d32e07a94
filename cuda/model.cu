// Kernels of the built-in policy (core/model_args.h): embedding-bag forward and backward, token sampling.
//
// Forward: one block per row, threads across V (coalesced): reads F weight rows + the bias (4(F+1)V bytes),
// writes 4V bytes. Backward: the (row, feature) pairs are bucketed by feature id on the host (the ids are a
// small [R, F] tensor), then one block per distinct id adds its rows' gradients in increasing row order:
// deterministic, no atomics; reads 4V bytes per pair and read-modify-writes 4V per id. Bias: one thread per
// column summing the rows in order.
// Sampling: one thread per row, in double, the same arithmetic and order as the CPU backend (inverse CDF in
// id order, or over the top-p nucleus sorted by probability, ties by id), from the same counter-based hash.
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

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

template <typename T>
__device__ __forceinline__ double logitAt(const SampleArgs& a, int64_t offset) {
  return static_cast<double>(toFloat(static_cast<const T*>(a.logits)[offset]));
}

// Whether token x comes before token y in the nucleus: more probable first, ties by lower id.
__device__ __forceinline__ bool before(const double* p, int32_t x, int32_t y) { return p[x] > p[y] || (p[x] == p[y] && x < y); }

__device__ void siftDown(int32_t* order, int64_t root, int64_t size, const double* p) {
  for (;;) {
    int64_t child = 2 * root + 1;
    if (child >= size) return;
    if (child + 1 < size && before(p, order[child], order[child + 1])) child++;
    if (!before(p, order[root], order[child])) return;
    const int32_t t = order[root];
    order[root] = order[child];
    order[child] = t;
    root = child;
  }
}

// Sorts order[0..n) into nucleus order (heapsort: in place, no recursion, O(n log n)). The heap keeps the
// token that comes last on top, so popping it to the back leaves the sorted order at the front.
__device__ void sortNucleus(int32_t* order, int64_t n, const double* p) {
  for (int64_t i = n / 2 - 1; i >= 0; i--) siftDown(order, i, n, p);
  for (int64_t end = n - 1; end > 0; end--) {
    const int32_t t = order[0];
    order[0] = order[end];
    order[end] = t;
    siftDown(order, 0, end, p);
  }
}

constexpr int kSampleBlock = 32;  // one thread per row does O(V) serial work: small blocks spread rows over SMs

template <typename T>
__global__ void __launch_bounds__(kSampleBlock) sampleKernel(SampleArgs a) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= a.rows) return;
  const int64_t base = r * a.V;
  double* p = a.p + base;
  double maxLogit = -INFINITY;
  int32_t argmax = -1;
  for (int64_t j = 0; j < a.V; j++) {
    const double x = logitAt<T>(a, base + j);
    p[j] = x;
    if (isnan(x) || x == INFINITY) { a.status[r] = 1; return; }
    if (x > maxLogit) { maxLogit = x; argmax = static_cast<int32_t>(j); }
  }
  if (argmax < 0) { a.status[r] = 2; return; }
  double sum = 0;
  for (int64_t j = 0; j < a.V; j++) {
    p[j] = exp((p[j] - maxLogit) * a.invT);
    sum += p[j];
  }
  int32_t chosen = argmax;
  if (!a.greedy) {
    const uint32_t stream = static_cast<uint32_t>(a.streams ? a.streams[r] : r);
    const uint64_t h = mix64(mix64(mix64(a.seed) ^ a.step) ^ static_cast<uint64_t>(stream));
    const double u = static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0);
    if (a.topP >= 1.0) {
      const double target = u * sum;
      double cum = 0;
      chosen = -1;
      int32_t lastPositive = argmax;
      for (int64_t j = 0; j < a.V; j++) {
        if (p[j] <= 0) continue;
        lastPositive = static_cast<int32_t>(j);
        cum += p[j];
        if (cum > target) { chosen = static_cast<int32_t>(j); break; }
      }
      if (chosen < 0) chosen = lastPositive;
    } else {
      int32_t* order = a.order + base;
      int64_t n = 0;
      for (int64_t j = 0; j < a.V; j++) {
        if (p[j] > 0) order[n++] = static_cast<int32_t>(j);
      }
      sortNucleus(order, n, p);
      const double need = a.topP * sum;
      double kept = 0;
      int64_t k = 0;
      while (k < n) {
        kept += p[order[k++]];
        if (kept >= need) break;
      }
      const double target = u * kept;
      double cum = 0;
      chosen = order[k - 1];
      for (int64_t i = 0; i < k; i++) {
        cum += p[order[i]];
        if (cum > target) { chosen = order[i]; break; }
      }
    }
  }
  a.tokens[r] = chosen;
  a.logp[r] = static_cast<float>((logitAt<T>(a, base + chosen) - maxLogit) * a.invT - log(sum));
  a.status[r] = 0;
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
