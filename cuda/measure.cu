// Kernels that measure rather than compute, for the benchmark and the GPU check:
//
// - copyProbeKernel / readProbeKernel: the device's memory bandwidth as our own kernels reach it, the
//   denominator of "% of the measured bandwidth" for the memory-bound ops. The copy reads and writes every
//   byte once (2 x bytes moved); the read touches every byte once and writes one word per warp. Both use
//   16-byte accesses and four independent loads in flight per thread before any store, the access pattern
//   of the row kernels, so the probe measures what a well-written streaming kernel can reach, not a peak
//   from the datasheet.
// - fillUniformKernel: benchmark inputs of gigabytes generated where they live (uniformAt of
//   csrc/ops/measure_args.h, a function of (seed, index)), one write per element.
// - the kernel timer's window (its state and the launch hooks are in kernel_timer.cuh): the time from the start
//   of the first kernel of an op to the end of its last, without the host's argument checks, worker hand-off
//   and status copies. In the SIMT build the events are host timestamps around kernels that run to
//   completion inside the launch call.
#include <algorithm>
#include <mutex>
#include <vector>

#include "launchers.h"

namespace grpo::GRPO_CUDA_NS {

namespace {

constexpr int kProbeThreads = 256;
constexpr int kProbeUnroll = 4;  // independent 16-byte loads per thread before the stores

__global__ void __launch_bounds__(kProbeThreads) copyProbeKernel(const uint4* __restrict__ src, uint4* __restrict__ dst, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + (kProbeUnroll - 1) * stride < n; i += kProbeUnroll * stride) {
    uint4 v[kProbeUnroll];
#pragma unroll
    for (int k = 0; k < kProbeUnroll; k++) v[k] = src[i + k * stride];
#pragma unroll
    for (int k = 0; k < kProbeUnroll; k++) dst[i + k * stride] = v[k];
  }
  for (; i < n; i += stride) dst[i] = src[i];
}

__global__ void __launch_bounds__(kProbeThreads) readProbeKernel(const uint4* __restrict__ src, int64_t n, unsigned* __restrict__ out) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  unsigned acc = 0;
  for (; i + (kProbeUnroll - 1) * stride < n; i += kProbeUnroll * stride) {
    uint4 v[kProbeUnroll];
#pragma unroll
    for (int k = 0; k < kProbeUnroll; k++) v[k] = src[i + k * stride];
#pragma unroll
    for (int k = 0; k < kProbeUnroll; k++) acc ^= v[k].x ^ v[k].y ^ v[k].z ^ v[k].w;
  }
  for (; i < n; i += stride) acc ^= src[i].x ^ src[i].y ^ src[i].z ^ src[i].w;
  // One store per warp: the loads feed a result, so the compiler cannot drop them, and the stores are noise.
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) acc ^= __shfl_xor_sync(0xffffffffu, acc, o);
  if ((threadIdx.x & 31) == 0) out[(static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5] = acc;
}

template <typename T>
__global__ void __launch_bounds__(kBlock) fillUniformKernel(T* out, int64_t n, uint64_t seed, float low, float span) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    out[i] = fromFloat<T>(low + span * uniformAt(seed, static_cast<uint64_t>(i)));
  }
}

int multiprocessors() {
  int device = 0, count = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
  return count > 0 ? count : 1;
}

// Enough blocks to keep every SM busy (8 of 256 threads each), fewer when there is less work.
unsigned probeBlocks(int64_t vectors, int threads) {
  const int64_t perBlock = static_cast<int64_t>(threads) * kProbeUnroll;
  const int64_t wanted = std::max<int64_t>(1, (vectors + perBlock - 1) / perBlock);
  return static_cast<unsigned>(std::min<int64_t>(wanted, static_cast<int64_t>(multiprocessors()) * 8));
}

double medianOf(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Times `reps` runs of `launch` on `stream` with one event pair each; returns the median in ms.
template <typename F>
double medianMs(int reps, cudaStream_t stream, F launch) {
  cudaEvent_t a = nullptr, b = nullptr;
  check(cudaEventCreate(&a), "cudaEventCreate (probe)");
  check(cudaEventCreate(&b), "cudaEventCreate (probe)");
  std::vector<double> samples;
  try {
    launch();  // warm-up: first-touch of the pages, instruction cache, clocks up
    for (int r = 0; r < reps; r++) {
      check(cudaEventRecord(a, stream), "cudaEventRecord (probe)");
      launch();
      check(cudaEventRecord(b, stream), "cudaEventRecord (probe)");
      check(cudaEventSynchronize(b), "cudaEventSynchronize (probe)");
      float ms = 0;
      check(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime (probe)");
      samples.push_back(ms);
    }
  } catch (...) {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    throw;
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return medianOf(samples);
}

}  // namespace

void startKernelTimer() {
  KernelTimer& t = kernelTimer();
  std::lock_guard<std::mutex> lock(t.mutex);
  if (!t.start) {
    check(cudaEventCreate(&t.start), "cudaEventCreate (kernel timer)");
    check(cudaEventCreate(&t.end), "cudaEventCreate (kernel timer)");
  }
  t.started = false;
  t.launches = 0;
  t.open.store(true, std::memory_order_release);
}

KernelTiming stopKernelTimer() {
  KernelTimer& t = kernelTimer();
  t.open.store(false, std::memory_order_release);
  std::lock_guard<std::mutex> lock(t.mutex);
  KernelTiming result;
  if (!t.started || t.launches == 0) return result;
  check(cudaEventSynchronize(t.end), "cudaEventSynchronize (kernel timer)");
  float ms = 0;
  check(cudaEventElapsedTime(&ms, t.start, t.end), "cudaEventElapsedTime (kernel timer)");
  result.ms = ms;
  result.launches = t.launches;
  t.started = false;
  return result;
}

void launchFillUniform(void* data, DType dtype, int64_t n, uint64_t seed, float low, float high, cudaStream_t stream) {
  if (n == 0) return;
  const float span = high - low;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((n + kBlock - 1) / kBlock, static_cast<int64_t>(multiprocessors()) * 16));
  cudaError_t e = cudaSuccess;
  switch (dtype) {
    case DType::BF16: e = grpoLaunch(fillUniformKernel<__nv_bfloat16>, dim3(blocks), dim3(kBlock), 0, stream, static_cast<__nv_bfloat16*>(data), n, seed, low, span); break;
    case DType::F16: e = grpoLaunch(fillUniformKernel<__half>, dim3(blocks), dim3(kBlock), 0, stream, static_cast<__half*>(data), n, seed, low, span); break;
    default: e = grpoLaunch(fillUniformKernel<float>, dim3(blocks), dim3(kBlock), 0, stream, static_cast<float*>(data), n, seed, low, span); break;
  }
  check(e, "the fill kernel launch");
}

void runBandwidthProbe(BandwidthProbeCall& c, cudaStream_t stream) {
  const int64_t vectors = c.bytes / 16;
  const size_t bytes = static_cast<size_t>(vectors) * 16;
  const unsigned blocks = probeBlocks(vectors, kProbeThreads);
  const size_t sinkWords = static_cast<size_t>(blocks) * kProbeThreads / 32;
  uint4 *src = nullptr, *dst = nullptr;
  unsigned* sink = nullptr;
  auto release = [&] {
    if (src) cudaFree(src);
    if (dst) cudaFree(dst);
    if (sink) cudaFree(sink);
  };
  try {
    check(cudaMalloc(reinterpret_cast<void**>(&src), bytes), "cudaMalloc (bandwidth probe)");
    check(cudaMalloc(reinterpret_cast<void**>(&dst), bytes), "cudaMalloc (bandwidth probe)");
    check(cudaMalloc(reinterpret_cast<void**>(&sink), sinkWords * sizeof(unsigned)), "cudaMalloc (bandwidth probe)");
    // Random words, never zeros (a compressible pattern could flatter the memory system), and a cleared destination.
    launchFillUniform(src, DType::F32, static_cast<int64_t>(bytes / 4), 0x5eed, -1.0f, 1.0f, stream);
    check(cudaMemsetAsync(dst, 0, bytes, stream), "cudaMemsetAsync (bandwidth probe)");
    c.copyMs = medianMs(c.reps, stream, [&] {
      check(grpoLaunch(copyProbeKernel, dim3(blocks), dim3(kProbeThreads), 0, stream, src, dst, vectors), "the copy probe launch");
    });
    // The copy kernel must have copied: compare a few spread-out 16-byte words (a wrong probe must not report
    // a speed). Checked before the memcpy pass below overwrites dst.
    c.verified = true;
    for (int k = 0; k < 8 && c.verified; k++) {
      const size_t at = static_cast<size_t>(vectors - 1) * static_cast<size_t>(k) / 7;
      uint4 a{}, b{};
      check(cudaMemcpy(&a, src + at, 16, cudaMemcpyDeviceToHost), "cudaMemcpy (probe check)");
      check(cudaMemcpy(&b, dst + at, 16, cudaMemcpyDeviceToHost), "cudaMemcpy (probe check)");
      c.verified = a.x == b.x && a.y == b.y && a.z == b.z && a.w == b.w;
    }
    c.readMs = medianMs(c.reps, stream, [&] {
      check(grpoLaunch(readProbeKernel, dim3(blocks), dim3(kProbeThreads), 0, stream, src, vectors, sink), "the read probe launch");
    });
    c.memcpyMs = medianMs(c.reps, stream, [&] {
      check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync (bandwidth probe)");
    });
  } catch (...) {
    release();
    throw;
  }
  release();
  c.blocks = static_cast<int>(blocks);
  c.threads = kProbeThreads;
  const double gb = static_cast<double>(bytes) / 1e9;
  c.copyGBps = c.copyMs > 0 ? 2 * gb / (c.copyMs / 1e3) : 0;
  c.readGBps = c.readMs > 0 ? gb / (c.readMs / 1e3) : 0;
  c.memcpyGBps = c.memcpyMs > 0 ? 2 * gb / (c.memcpyMs / 1e3) : 0;
}

}  // namespace grpo::GRPO_CUDA_NS
