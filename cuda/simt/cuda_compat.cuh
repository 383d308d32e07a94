// One include for the kernel source that compiles under both nvcc and the host compiler.
//
//   nvcc (device build)       -> the CUDA toolkit headers (runtime, fp16, bf16, cooperative groups)
//   g++/clang++ as C++ (SIMT) -> cuda/simt/simt.h, the SIMT executor's stand-ins for all of them
//
// It also gives the two spellings that differ between the builds a single name:
//   GRPO_DYNAMIC_SHARED(T, name);  dynamic shared memory as `T* name` (the host build cannot give
//                                  `extern __shared__ T name[]` a per-block address; see simt.h)
//   GRPO_CUDA_NS                   `cuda` under nvcc, `simt` in the host build: put kernels and launchers
//                                  in grpo::GRPO_CUDA_NS so both builds can live in one binary
#pragma once

#if defined(__CUDACC__)
#include <cooperative_groups.h>
#include <cooperative_groups/reduce.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#define GRPO_CUDA_NS cuda
// One extern name and type for every kernel of a translation unit (nvcc rejects one name declared with
// two types); each kernel sees it through its own typed pointer.
#define GRPO_DYNAMIC_SHARED(T, name)                                  \
  extern __shared__ __align__(16) unsigned char grpo_dynamic_smem_[]; \
  T* const name = reinterpret_cast<T*>(grpo_dynamic_smem_)
#else
#include "simt.h"

#define GRPO_CUDA_NS simt
#endif
