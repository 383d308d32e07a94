// cuBLASLt, loaded at run time (dlopen of libcublasLt.so.13/.12/.11): the default GEMM of the cuda backend when
// the library is on the machine, with no link-time dependency, so the same .node loads and falls back to the
// kernels of cuda/linear.cu without it. GRPO_CUDA_GEMM=own forces our kernels; backend.info() reports which
// GEMM is in use and why (cudaGemmStatus()).
#pragma once
#include <string>

#include "core/linear_args.h"
#include "gemm_status.h"
#include "launch.cuh"

namespace grpo::cuda {

// Each returns false (and does nothing) when cuBLASLt is not in use or cannot run this case; the caller then
// runs its own kernels. linearBackward covers gradInput and gradWeight; the bias gradient is left to the caller.
bool cublasLinear(const LinearCall& c, cudaStream_t stream);
bool cublasLinearBackward(const LinearBackwardCall& c, cudaStream_t stream);

}  // namespace grpo::cuda
