// The one place that launches kernels, for every launcher in cuda/*.cu.
//
// Under nvcc a launch is `kernel<<<grid, block, smem, stream>>>(args...)` (clusters: cudaLaunchKernelEx
// with a cluster-dimension attribute); in the host build the same call runs the grid on the SIMT
// executor (cuda/simt/). Kernels never contain `<<<...>>>` themselves, so one source serves both.
//
//   cudaError_t e = grpoLaunch(myKernel, grid, block, smemBytes, stream, arg0, arg1);
//   cudaError_t e = grpoLaunchCluster(myKernel, grid, block, dim3(2, 1, 1), smemBytes, stream, args...);
//   if (e != cudaSuccess) throw ...(grpoErrorDetail(e));
//
// Both return the launch's error: a configuration error (nothing ran), and in the SIMT build also a fault
// of the kernel itself (divergent barrier, device assert, out-of-bounds write), since it runs to
// completion before the call returns. On a GPU such faults surface at the next synchronisation.
#pragma once

#include <utility>

#include "simt/cuda_compat.cuh"

// The kernel timer (cuda/kernel_timer.cuh): grpoLaunch records CUDA events around each launch while a timing
// window is open. A kernel started outside grpoLaunch (a library's) is timed only if its caller brackets it
// with the same two calls.
#include "kernel_timer.cuh"

#if defined(__CUDACC__)

template <typename... KArgs, typename... Args>
[[nodiscard]] inline cudaError_t grpoLaunch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
                                            cudaStream_t stream, Args&&... args) {
  grpo::GRPO_CUDA_NS::kernelTimingBeforeLaunch(stream);
  kernel<<<grid, block, smem, stream>>>(std::forward<Args>(args)...);
  const cudaError_t e = cudaGetLastError();
  grpo::GRPO_CUDA_NS::kernelTimingAfterLaunch(stream);
  return e;
}

template <typename... KArgs, typename... Args>
[[nodiscard]] inline cudaError_t grpoLaunchCluster(void (*kernel)(KArgs...), dim3 grid, dim3 block, dim3 cluster,
                                                   size_t smem, cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeClusterDimension;
  attribute[0].val.clusterDim.x = cluster.x;
  attribute[0].val.clusterDim.y = cluster.y;
  attribute[0].val.clusterDim.z = cluster.z;
  config.attrs = attribute;
  config.numAttrs = 1;
  grpo::GRPO_CUDA_NS::kernelTimingBeforeLaunch(stream);
  const cudaError_t e = cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
  grpo::GRPO_CUDA_NS::kernelTimingAfterLaunch(stream);
  return e;
}

// The message for an error code; the SIMT build has a longer one naming kernel, block and threads.
inline const char* grpoErrorDetail(cudaError_t e) { return cudaGetErrorString(e); }

#else

// The smem argument's type records the call site, so SIMT errors can say which launch failed.
template <typename... KArgs, typename... Args>
[[nodiscard]] inline cudaError_t grpoLaunch(void (*kernel)(KArgs...), dim3 grid, dim3 block,
                                            ::grpo_simt::SmemBytes smem, cudaStream_t stream, Args&&... args) {
  grpo::GRPO_CUDA_NS::kernelTimingBeforeLaunch(stream);
  const cudaError_t e = ::grpo_simt::launch(kernel, grid, block, dim3(1, 1, 1), false, smem.bytes, stream, smem.site,
                                            std::forward<Args>(args)...);
  grpo::GRPO_CUDA_NS::kernelTimingAfterLaunch(stream);
  return e;
}

template <typename... KArgs, typename... Args>
[[nodiscard]] inline cudaError_t grpoLaunchCluster(void (*kernel)(KArgs...), dim3 grid, dim3 block, dim3 cluster,
                                                   ::grpo_simt::SmemBytes smem, cudaStream_t stream, Args&&... args) {
  grpo::GRPO_CUDA_NS::kernelTimingBeforeLaunch(stream);
  const cudaError_t e = ::grpo_simt::launch(kernel, grid, block, cluster, true, smem.bytes, stream, smem.site,
                                            std::forward<Args>(args)...);
  grpo::GRPO_CUDA_NS::kernelTimingAfterLaunch(stream);
  return e;
}

inline const char* grpoErrorDetail(cudaError_t e) { return ::grpo_simt::error_detail(e); }

#endif

// Opting a kernel into more than 48 KiB of dynamic shared memory, the same way in both builds.
template <typename... KArgs>
[[nodiscard]] inline cudaError_t grpoSetMaxDynamicSmem(void (*kernel)(KArgs...), size_t bytes) {
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
}
