// GRPO_HD marks the functions that the CPU backend, the CUDA kernels and the SIMT build of those kernels all
// compile from one source (the per-token loss math, the row sampler): __host__ __device__ under nvcc, a
// plain inline function for the host compiler.
#pragma once

#if defined(__CUDACC__)
#define GRPO_HD __host__ __device__ __forceinline__
#else
#define GRPO_HD inline
#endif
