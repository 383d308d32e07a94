// The linear layer on the CPU: its three products are calls of the GEMM of cpu/gemm.h with strides that read
// the tensors where they lie (no transposed copies; the packing absorbs each layout):
//   forward     y [N, M]  = x [N, K] · Wᵀ      A = x (row-major), B = Wᵀ (W read column-major)
//   input grad  dx [N, K] = dy [N, M] · W      A = dy (row-major), B = W (row-major)
//   weight grad dW [M, K] += dyᵀ · x           A = dyᵀ (dy read column-major), B = x (row-major)
// and a column sum for the bias gradient. Every sum over K or N is accumulated in f32 (the bias sum in double)
// and rounded once into the output.
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/backend.h"
#include "cpu/cpu_backend.h"
#include "cpu/gemm.h"
#include "cpu/thread_pool.h"
#include "core/half.h"

namespace grpo {
namespace {

uint16_t roundBf16(float x) {
  uint32_t u = floatToBits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// gradBias[m] += Σ_n dy[n, m], in double, rows in order (the same result for any thread count).
void addColumnSums(const TensorRef& dy, int64_t N, int64_t M, const TensorRef& gradBias) {
  constexpr int64_t kBlock = 512;
  cpu::parallelFor((M + kBlock - 1) / kBlock, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> sums(kBlock);
    for (int64_t blk = begin; blk < end; blk++) {
      const int64_t m0 = blk * kBlock, width = std::min(kBlock, M - m0);
      std::fill(sums.begin(), sums.end(), 0.0);
      for (int64_t n = 0; n < N; n++) {
        if (dy.dtype == DType::F32) {
          const float* row = dy.data<float>() + n * M + m0;
          for (int64_t j = 0; j < width; j++) sums[j] += row[j];
        } else {
          const uint16_t* row = dy.data<uint16_t>() + n * M + m0;
          for (int64_t j = 0; j < width; j++) sums[j] += bf16ToFloat(row[j]);
        }
      }
      for (int64_t j = 0; j < width; j++) {
        if (gradBias.dtype == DType::F32) {
          float* g = gradBias.data<float>() + m0 + j;
          *g = static_cast<float>(static_cast<double>(*g) + sums[j]);
        } else {
          uint16_t* g = gradBias.data<uint16_t>() + m0 + j;
          *g = roundBf16(static_cast<float>(static_cast<double>(bf16ToFloat(*g)) + sums[j]));
        }
      }
    }
  });
}

}  // namespace

void cpu::CpuBackend::linear(LinearCall& c) {
  GemmProblem p;
  p.M = c.N;
  p.N = c.M;
  p.K = c.K;
  p.A = GemmMatrix{c.x.storage->data(), c.x.dtype, c.K, 1};
  p.B = GemmMatrix{c.weight.storage->data(), c.weight.dtype, 1, c.K};
  GemmOutput out;
  out.data = c.out.storage->data();
  out.dtype = c.out.dtype;
  out.ld = c.M;
  if (c.bias.defined()) {
    out.bias = c.bias.storage->data();
    out.biasDtype = c.bias.dtype;
  }
  gemm(p, out);
}

void cpu::CpuBackend::linearBackward(LinearBackwardCall& c) {
  const DType dt = c.gradOutput.dtype;
  if (c.gradInput.defined()) {
    GemmProblem p;
    p.M = c.N;
    p.N = c.K;
    p.K = c.M;
    p.A = GemmMatrix{c.gradOutput.storage->data(), dt, c.M, 1};
    p.B = GemmMatrix{c.weight.storage->data(), c.weight.dtype, c.K, 1};
    GemmOutput out;
    out.data = c.gradInput.storage->data();
    out.dtype = c.gradInput.dtype;
    out.ld = c.K;
    gemm(p, out);
  }
  if (c.gradWeight.defined()) {
    GemmProblem p;
    p.M = c.M;
    p.N = c.K;
    p.K = c.N;
    p.A = GemmMatrix{c.gradOutput.storage->data(), dt, 1, c.M};
    p.B = GemmMatrix{c.x.storage->data(), c.x.dtype, c.K, 1};
    GemmOutput out;
    out.data = c.gradWeight.storage->data();
    out.dtype = c.gradWeight.dtype;
    out.ld = c.K;
    out.accumulate = true;
    gemm(p, out);
  }
  if (c.gradBias.defined()) addColumnSums(c.gradOutput, c.N, c.M, c.gradBias);
}

}  // namespace grpo
