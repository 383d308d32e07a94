// Optimizer kernels: sums of squares for the global gradient norm (fixed chunks, each reduced in double by
// one block, so the norm does not depend on the device or the launch), a scale for clipping, and fused
// AdamW (one read and one write of param, grad, m and v: 32 bytes per parameter).
#include "launchers.h"

namespace grpo::GRPO_CUDA_NS {

namespace {

__global__ void __launch_bounds__(kBlock) sumSquaresKernel(const float* x, int64_t n, double* partial) {
  __shared__ double lanes[kBlock];
  const int64_t begin = static_cast<int64_t>(blockIdx.x) * kNormChunk;
  const int64_t end = begin + kNormChunk < n ? begin + kNormChunk : n;
  double acc = 0;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) acc += static_cast<double>(x[i]) * x[i];
  lanes[threadIdx.x] = acc;
  __syncthreads();
  for (int width = kBlock / 2; width > 0; width >>= 1) {  // a fixed tree: the same sum on every run
    if (static_cast<int>(threadIdx.x) < width) lanes[threadIdx.x] += lanes[threadIdx.x + width];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = lanes[0];
}

__global__ void __launch_bounds__(kBlock) scaleKernel(float* x, int64_t n, float factor) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] *= factor;
}

__global__ void __launch_bounds__(kBlock) adamwKernel(AdamWArgs a) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= a.n) return;
  // The same float expression, in the same order, as the CPU backend.
  const float g = a.grad[i] * a.gradScale;
  const float m = a.beta1 * a.m[i] + a.oneMinusBeta1 * g;
  const float v = a.beta2 * a.v[i] + a.oneMinusBeta2 * g * g;
  a.m[i] = m;
  a.v[i] = v;
  a.param[i] = a.param[i] * a.decay - a.stepSize * m / (sqrtf(v) * a.invSqrtBc2 + a.eps);
  if (a.zeroGrad) a.grad[i] = 0.0f;
}

dim3 gridFor(int64_t n) { return dim3(static_cast<unsigned>((n + kBlock - 1) / kBlock)); }

}  // namespace

void launchSumSquares(const float* x, int64_t n, double* partial, cudaStream_t stream) {
  if (n == 0) return;
  check(grpoLaunch(sumSquaresKernel, dim3(static_cast<unsigned>((n + kNormChunk - 1) / kNormChunk)), dim3(kBlock), 0, stream, x, n, partial),
        "the gradient norm kernel launch");
}

void launchScale(float* x, int64_t n, float factor, cudaStream_t stream) {
  if (n == 0) return;
  check(grpoLaunch(scaleKernel, gridFor(n), dim3(kBlock), 0, stream, x, n, factor), "the scale kernel launch");
}

void launchAdamW(const AdamWArgs& a, cudaStream_t stream) {
  if (a.n == 0) return;
  check(grpoLaunch(adamwKernel, gridFor(a.n), dim3(kBlock), 0, stream, a), "the AdamW kernel launch");
}

}  // namespace grpo::GRPO_CUDA_NS
