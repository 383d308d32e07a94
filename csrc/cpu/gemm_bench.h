// Measurements for the GEMM benchmark (csrc/cpu/gemm_bench.cc): multiply-add peaks and OpenBLAS's sgemm.
#pragma once
#include "core/gemm_bench.h"
#include "core/tensor.h"

namespace grpo::cpu {

// Peaks with every pool thread, best of five runs of about `ms` milliseconds each.
GemmPeak measureGemmPeak(double ms);
BlasInfo openblasInfo();
// Best seconds of `reps` runs of cblas_sgemm: C [M, N] = op(A) · op(B), row-major f32 tensors as they lie
// (A is [M, K] or, with transA, [K, M]; B is [K, N] or, with transB, [N, K]).
BlasTiming openblasSgemm(const TensorRef& a, const TensorRef& b, const TensorRef& c, bool transA, bool transB, int reps);

}  // namespace grpo::cpu
