// The row-wise transformer ops (core/transformer_args.h) on CUDA: RMSNorm, rope, SwiGLU, embedding, add, cast and
// the KV-cache write, each with its backward where it has one. All are memory-bound; each reads its inputs once
// and writes its outputs once (the speed of light is those bytes at the device's bandwidth):
// - rmsNorm: one block per row; the row is read twice (sum of squares, then the scaled write) but the second read
//   hits L1/L2 for rows up to tens of KB. Backward: the same, plus per-32-row-chunk partial sums of the weight
//   gradient (each column of a chunk owned by one thread), summed over chunks in order by a second kernel:
//   deterministic, no atomics.
// - rope: one block per token; the D/2 angles of the token are computed once (in double, then rounded) into
//   shared memory and applied to every head.
// - swiglu, add, cast: grid-stride elementwise loops.
// - embedding: one block per token copies a row. Backward: the token rows are bucketed by id on the host (ids
//   are a small i32 tensor) and one block per distinct id adds its rows in increasing token order.
#include <algorithm>
#include <cmath>
#include <map>

#include "transformer_launchers.h"

namespace grpo::GRPO_CUDA_NS {

namespace {

constexpr int kNormChunk = 32;  // rows per partial sum of rmsNorm's weight gradient
constexpr int kElementBlock = 256;

template <typename T>
__device__ __forceinline__ float ld(const T* p, int64_t i) { return toFloat(p[i]); }

template <typename T, typename TW>
__global__ void __launch_bounds__(kBlock) rmsNormKernel(const T* x, const TW* w, float eps, int64_t n, T* out, float* rstdOut) {
  __shared__ float scratch[kBlock / 32];
  const int64_t r = blockIdx.x;
  const T* xr = x + r * n;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = ld(xr, i);
    ss += v * v;
  }
  ss = blockSum(ss, scratch);
  const float rstd = 1.0f / sqrtf(ss / static_cast<float>(n) + eps);
  if (threadIdx.x == 0) rstdOut[r] = rstd;
  T* y = out + r * n;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) y[i] = fromFloat<T>(ld(xr, i) * rstd * ld(w, i));
}

// One block per chunk of kNormChunk rows: gradX of each row, and (with partial) Σ over the chunk's rows of g·x̂.
template <typename T, typename TW>
__global__ void __launch_bounds__(kBlock) rmsNormBackwardKernel(const T* g, const T* x, const TW* w, const float* rstdIn,
                                                                int64_t rows, int64_t n, T* dx, float* partial) {
  __shared__ float scratch[kBlock / 32];
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * kNormChunk;
  const int64_t r1 = r0 + kNormChunk < rows ? r0 + kNormChunk : rows;
  float* part = partial ? partial + static_cast<int64_t>(blockIdx.x) * n : nullptr;
  for (int64_t r = r0; r < r1; r++) {
    const T* gr = g + r * n;
    const T* xr = x + r * n;
    const float rstd = rstdIn[r];
    float dot = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) dot += ld(gr, i) * ld(w, i) * ld(xr, i);
    dot = blockSum(dot, scratch);
    const float k = rstd * rstd * rstd * dot / static_cast<float>(n);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const float gv = ld(gr, i), xv = ld(xr, i);
      dx[r * n + i] = fromFloat<T>(gv * ld(w, i) * rstd - xv * k);
      if (part) part[i] = (r == r0 ? 0.0f : part[i]) + gv * xv * rstd;  // column i is this thread's alone
    }
  }
}

__global__ void __launch_bounds__(kElementBlock) sumChunksKernel(const float* partial, int64_t chunks, int64_t n, float* gradWeight) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float acc = 0.0f;
  for (int64_t c = 0; c < chunks; c++) acc += partial[c * n + i];
  gradWeight[i] += acc;
}

// cos and sin of an angle, in double up to the final rounding: reduced by the nearest multiple of π/2 (Cody-Waite,
// three parts of π/2), then Taylor polynomials on [-π/4, π/4]. The library sin/cos would do the same but carry a
// Payne-Hanek path for huge arguments that needs local memory.
__device__ __forceinline__ float2 cosSin(double a) {
  const double nq = rint(a * 0.63661977236758134308);
  double r = a - nq * 1.5707963267341256e+00;
  r -= nq * 6.0771005065061922e-11;
  r -= nq * 2.0222662487959506e-21;
  const double r2 = r * r;
  const double sn = r * (1 + r2 * (-1.0 / 6 + r2 * (1.0 / 120 + r2 * (-1.0 / 5040 + r2 * (1.0 / 362880 + r2 * (-1.0 / 39916800 + r2 * (1.0 / 6227020800.0)))))));
  const double cs = 1 + r2 * (-0.5 + r2 * (1.0 / 24 + r2 * (-1.0 / 720 + r2 * (1.0 / 40320 + r2 * (-1.0 / 3628800 + r2 * (1.0 / 479001600.0))))));
  const int q = static_cast<int>(static_cast<long long>(nq) & 3);
  const double sv = q == 0 ? sn : q == 1 ? cs : q == 2 ? -sn : -cs;
  const double cv = q == 0 ? cs : q == 1 ? -sn : q == 2 ? -cs : sn;
  return make_float2(static_cast<float>(cv), static_cast<float>(sv));
}

template <typename T>
__global__ void __launch_bounds__(kBlock) ropeKernel(const T* x, const int32_t* positions, const double* invFreq, int64_t H,
                                                     int64_t D, bool inverse, T* out) {
  GRPO_DYNAMIC_SHARED(float, table);  // [D/2 cos][D/2 sin]
  const int64_t t = blockIdx.x, half = D / 2;
  const double pos = static_cast<double>(positions[t]);
  for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
    const float2 cs = cosSin(pos * invFreq[i]);
    table[i] = cs.x;
    table[half + i] = inverse ? -cs.y : cs.y;
  }
  __syncthreads();
  const T* xt = x + t * H * D;
  T* yt = out + t * H * D;
  for (int64_t e = threadIdx.x; e < H * half; e += blockDim.x) {
    const int64_t h = e / half, i = e % half;
    const float x1 = ld(xt, h * D + i), x2 = ld(xt, h * D + half + i), c = table[i], s = table[half + i];
    yt[h * D + i] = fromFloat<T>(x1 * c - x2 * s);
    yt[h * D + half + i] = fromFloat<T>(x2 * c + x1 * s);
  }
}

__device__ __forceinline__ float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

// Rows on grid.y (strided), columns on grid.x · blockDim.x: no 64-bit division per element.
template <typename T>
__global__ void __launch_bounds__(kElementBlock) swigluKernel(const T* gate, const T* up, int64_t rows, int64_t n, bool fused, T* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const T* g = fused ? gate + r * 2 * n : gate + r * n;
    const T* u = fused ? g + n : up + r * n;
    const float gv = ld(g, i);
    out[r * n + i] = fromFloat<T>(gv * sigmoidf(gv) * ld(u, i));
  }
}

template <typename T>
__global__ void __launch_bounds__(kElementBlock) swigluBackwardKernel(const T* dy, const T* gate, const T* up, int64_t rows, int64_t n,
                                                                      bool fused, T* dGate, T* dUp) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const int64_t stride = fused ? 2 * n : n;
    const T* g = gate + r * stride;
    const T* u = fused ? g + n : up + r * n;
    T* dg = dGate + r * stride;
    T* du = fused ? dg + n : dUp + r * n;
    const float gv = ld(g, i), uv = ld(u, i), d = ld(dy, r * n + i);
    const float sg = sigmoidf(gv);
    dg[i] = fromFloat<T>(d * uv * sg * (1.0f + gv * (1.0f - sg)));
    du[i] = fromFloat<T>(d * gv * sg);
  }
}

template <typename A, typename B>
__global__ void __launch_bounds__(kElementBlock) addKernel(const A* a, const B* b, int64_t n, A* out) {
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[e] = fromFloat<A>(ld(a, e) + ld(b, e));
  }
}

template <typename S, typename D>
__global__ void __launch_bounds__(kElementBlock) castKernel(const S* x, int64_t n, D* out) {
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[e] = fromFloat<D>(ld(x, e));
  }
}

// Rows of `words` 16-bit words: embedding rows and cache rows are copied bit for bit.
__global__ void __launch_bounds__(kBlock) gatherRowsKernel(const uint16_t* table, const int32_t* ids, int64_t words, uint16_t* out) {
  const int64_t t = blockIdx.x;
  const uint16_t* src = table + static_cast<int64_t>(ids[t]) * words;
  for (int64_t i = threadIdx.x; i < words; i += blockDim.x) out[t * words + i] = src[i];
}

template <typename T>
__global__ void __launch_bounds__(kBlock) embeddingBackwardKernel(const T* g, const int64_t* rowStart, const int32_t* rowList,
                                                                  const int32_t* idOf, int64_t C, float* gradWeight) {
  const int64_t e = blockIdx.x;
  float* gw = gradWeight + static_cast<int64_t>(idOf[e]) * C;
  for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
    float acc = gw[j];
    for (int64_t k = rowStart[e]; k < rowStart[e + 1]; k++) acc += ld(g, static_cast<int64_t>(rowList[k]) * C + j);
    gw[j] = acc;
  }
}

// Block (i, b): token i of sequence b (if it has one) into cache row b, every kv head.
__global__ void __launch_bounds__(kBlock) cacheWriteKernel(const uint16_t* src, const int32_t* seqStart, const int32_t* seqLen,
                                                           const int32_t* cacheStart, int64_t Hkv, int64_t S, int64_t rowWords,
                                                           uint16_t* cache) {
  const int64_t i = blockIdx.x, b = blockIdx.y;
  if (i >= seqLen[b]) return;
  const uint16_t* from = src + (seqStart[b] + i) * Hkv * rowWords;
  for (int64_t e = threadIdx.x; e < Hkv * rowWords; e += blockDim.x) {
    const int64_t h = e / rowWords, w = e % rowWords;
    cache[((b * Hkv + h) * S + cacheStart[b] + i) * rowWords + w] = from[e];
  }
}

// Columns over grid.x, rows over grid.y (at most 65535; the kernels stride over the rest).
dim3 rowGrid(int64_t rows, int64_t n) {
  return dim3(static_cast<unsigned>((n + kElementBlock - 1) / kElementBlock), static_cast<unsigned>(std::min<int64_t>(rows, 65535)));
}

unsigned elementGrid(int64_t n) {
  const int64_t blocks = (n + kElementBlock - 1) / kElementBlock;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(blocks, 65536)));
}

template <typename T>
const T* cptr(const TensorRef& t) { return static_cast<const T*>(t.storage->data()); }
template <typename T>
T* mptr(const TensorRef& t) { return static_cast<T*>(t.storage->data()); }

// Calls f.template operator()<T>() with T = float or __nv_bfloat16 for dtype.
template <typename F>
void byDtype(DType d, F&& f) {
  if (d == DType::BF16) f(static_cast<__nv_bfloat16*>(nullptr));
  else f(static_cast<float*>(nullptr));
}

}  // namespace

void runRmsNorm(RmsNormCall& c, cudaStream_t s) {
  if (c.rows == 0) return;
  byDtype(c.x.dtype, [&](auto* xt) {
    using T = std::remove_pointer_t<decltype(xt)>;
    byDtype(c.weight.dtype, [&](auto* wt) {
      using TW = std::remove_pointer_t<decltype(wt)>;
      check(grpoLaunch(rmsNormKernel<T, TW>, dim3(static_cast<unsigned>(c.rows)), dim3(rowBlockThreads(c.n, 1)), 0, s, cptr<T>(c.x),
                       cptr<TW>(c.weight), c.eps, c.n, mptr<T>(c.out), mptr<float>(c.rstd)),
            "the rmsNorm kernel launch");
    });
  });
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
}

void runRmsNormBackward(RmsNormBackwardCall& c, cudaStream_t s) {
  if (c.rows == 0) return;
  const int64_t chunks = (c.rows + kNormChunk - 1) / kNormChunk;
  Scratch<float> partial(c.gradWeight.defined() ? static_cast<size_t>(chunks * c.n) : 0);
  byDtype(c.x.dtype, [&](auto* xt) {
    using T = std::remove_pointer_t<decltype(xt)>;
    byDtype(c.weight.dtype, [&](auto* wt) {
      using TW = std::remove_pointer_t<decltype(wt)>;
      check(grpoLaunch(rmsNormBackwardKernel<T, TW>, dim3(static_cast<unsigned>(chunks)), dim3(rowBlockThreads(c.n, 1)), 0, s,
                       cptr<T>(c.gradOut), cptr<T>(c.x), cptr<TW>(c.weight), cptr<float>(c.rstd), c.rows, c.n, mptr<T>(c.gradX),
                       partial.get()),
            "the rmsNorm backward kernel launch");
    });
  });
  if (c.gradWeight.defined()) {
    check(grpoLaunch(sumChunksKernel, dim3(static_cast<unsigned>((c.n + kElementBlock - 1) / kElementBlock)), dim3(kElementBlock), 0, s,
                     static_cast<const float*>(partial.get()), chunks, c.n, mptr<float>(c.gradWeight)),
          "the rmsNorm weight-gradient kernel launch");
  }
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
}

void runRope(RopeCall& c, cudaStream_t s) {
  if (c.tokens == 0) return;
  const int64_t half = c.headDim / 2;
  std::vector<double> inv(c.invFreq);
  if (inv.empty()) {
    inv.resize(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; i++) inv[i] = std::pow(c.theta, -2.0 * static_cast<double>(i) / static_cast<double>(c.headDim));
  }
  Scratch<double> invFreq(inv.size());
  check(cudaMemcpyAsync(invFreq.get(), inv.data(), inv.size() * sizeof(double), cudaMemcpyHostToDevice, s), "cudaMemcpyAsync to device");
  const size_t smem = static_cast<size_t>(c.headDim) * sizeof(float);
  byDtype(c.x.dtype, [&](auto* xt) {
    using T = std::remove_pointer_t<decltype(xt)>;
    if (smem > 48 * 1024) check(grpoSetMaxDynamicSmem(ropeKernel<T>, smem), "cudaFuncSetAttribute");
    check(grpoLaunch(ropeKernel<T>, dim3(static_cast<unsigned>(c.tokens)), dim3(rowBlockThreads(c.heads * half, 1)), smem, s, cptr<T>(c.x),
                     cptr<int32_t>(c.positions), static_cast<const double*>(invFreq.get()), c.heads, c.headDim, c.inverse, mptr<T>(c.out)),
          "the rope kernel launch");
  });
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
}

void runSwiglu(SwigluCall& c, cudaStream_t s) {
  const int64_t n = c.rows * c.n;
  if (n == 0) return;
  byDtype(c.gate.dtype, [&](auto* tt) {
    using T = std::remove_pointer_t<decltype(tt)>;
    check(grpoLaunch(swigluKernel<T>, rowGrid(c.rows, c.n), dim3(kElementBlock), 0, s, cptr<T>(c.gate),
                     c.fused ? static_cast<const T*>(nullptr) : cptr<T>(c.up), c.rows, c.n, c.fused, mptr<T>(c.out)),
          "the swiglu kernel launch");
  });
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
}

void runSwigluBackward(SwigluBackwardCall& c, cudaStream_t s) {
  const int64_t n = c.rows * c.n;
  if (n == 0) return;
  byDtype(c.gate.dtype, [&](auto* tt) {
    using T = std::remove_pointer_t<decltype(tt)>;
    check(grpoLaunch(swigluBackwardKernel<T>, rowGrid(c.rows, c.n), dim3(kElementBlock), 0, s, cptr<T>(c.gradOut), cptr<T>(c.gate),
                     c.fused ? static_cast<const T*>(nullptr) : cptr<T>(c.up), c.rows, c.n, c.fused, mptr<T>(c.gradGate),
                     c.fused ? static_cast<T*>(nullptr) : mptr<T>(c.gradUp)),
          "the swiglu backward kernel launch");
  });
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
}

void runEmbedding(EmbeddingCall& c, cudaStream_t s) {
  if (c.tokens == 0) return;
  const std::vector<int32_t> ids = hostInts(c.ids, s);
  checkTokenIds(ids.data(), c.tokens, c.vocab);
  const int64_t words = c.dim * static_cast<int64_t>(dtypeSize(c.weight.dtype)) / 2;
  check(grpoLaunch(gatherRowsKernel, dim3(static_cast<unsigned>(c.tokens)), dim3(kBlock), 0, s, cptr<uint16_t>(c.weight), cptr<int32_t>(c.ids),
                   words, mptr<uint16_t>(c.out)),
        "the embedding kernel launch");
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
}

void runEmbeddingBackward(EmbeddingBackwardCall& c, cudaStream_t s) {
  if (c.tokens == 0) return;
  const std::vector<int32_t> ids = hostInts(c.ids, s);
  checkTokenIds(ids.data(), c.tokens, c.vocab);
  std::map<int32_t, std::vector<int32_t>> rowsOf;
  for (int64_t t = 0; t < c.tokens; t++) rowsOf[ids[t]].push_back(static_cast<int32_t>(t));
  std::vector<int64_t> rowStart{0};
  std::vector<int32_t> rowList, idOf;
  for (const auto& [id, list] : rowsOf) {
    idOf.push_back(id);
    rowList.insert(rowList.end(), list.begin(), list.end());
    rowStart.push_back(static_cast<int64_t>(rowList.size()));
  }
  Scratch<int64_t> dStart(rowStart.size());
  Scratch<int32_t> dRows(rowList.size()), dIds(idOf.size());
  check(cudaMemcpyAsync(dStart.get(), rowStart.data(), rowStart.size() * sizeof(int64_t), cudaMemcpyHostToDevice, s), "cudaMemcpyAsync");
  check(cudaMemcpyAsync(dRows.get(), rowList.data(), rowList.size() * sizeof(int32_t), cudaMemcpyHostToDevice, s), "cudaMemcpyAsync");
  check(cudaMemcpyAsync(dIds.get(), idOf.data(), idOf.size() * sizeof(int32_t), cudaMemcpyHostToDevice, s), "cudaMemcpyAsync");
  byDtype(c.gradOut.dtype, [&](auto* tt) {
    using T = std::remove_pointer_t<decltype(tt)>;
    check(grpoLaunch(embeddingBackwardKernel<T>, dim3(static_cast<unsigned>(idOf.size())), dim3(rowBlockThreads(c.dim, 1)), 0, s,
                     cptr<T>(c.gradOut), static_cast<const int64_t*>(dStart.get()), static_cast<const int32_t*>(dRows.get()),
                     static_cast<const int32_t*>(dIds.get()), c.dim, mptr<float>(c.gradWeight)),
          "the embedding backward kernel launch");
  });
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
}

void runAdd(AddCall& c, cudaStream_t s) {
  if (c.n == 0) return;
  byDtype(c.a.dtype, [&](auto* at) {
    using A = std::remove_pointer_t<decltype(at)>;
    byDtype(c.b.dtype, [&](auto* bt) {
      using B = std::remove_pointer_t<decltype(bt)>;
      check(grpoLaunch(addKernel<A, B>, dim3(elementGrid(c.n)), dim3(kElementBlock), 0, s, cptr<A>(c.a), cptr<B>(c.b), c.n, mptr<A>(c.out)),
            "the add kernel launch");
    });
  });
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
}

void runCast(CastCall& c, cudaStream_t s) {
  if (c.n == 0) return;
  byDtype(c.x.dtype, [&](auto* xt) {
    using S = std::remove_pointer_t<decltype(xt)>;
    byDtype(c.out.dtype, [&](auto* ot) {
      using D = std::remove_pointer_t<decltype(ot)>;
      check(grpoLaunch(castKernel<S, D>, dim3(elementGrid(c.n)), dim3(kElementBlock), 0, s, cptr<S>(c.x), c.n, mptr<D>(c.out)),
            "the cast kernel launch");
    });
  });
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
}

void runKvCacheWrite(KvCacheWriteCall& c, cudaStream_t s) {
  const std::vector<SequenceRange> seqs = sequenceRanges(hostInts(c.seqStarts, s), hostInts(c.seqLens, s), c.batch, c.tokens);
  const std::vector<int32_t> cacheStarts = hostInts(c.cacheStarts, s);
  checkCacheWrites(seqs, cacheStarts, c.capacity);
  int32_t maxLen = 0;
  std::vector<int32_t> starts, lens;
  for (const SequenceRange& r : seqs) {
    starts.push_back(r.start);
    lens.push_back(r.len);
    maxLen = std::max(maxLen, r.len);
  }
  if (maxLen == 0 || c.batch == 0) return;
  Scratch<int32_t> dev(3 * seqs.size());
  const size_t B = seqs.size();
  check(cudaMemcpyAsync(dev.get(), starts.data(), B * 4, cudaMemcpyHostToDevice, s), "cudaMemcpyAsync");
  check(cudaMemcpyAsync(dev.get() + B, lens.data(), B * 4, cudaMemcpyHostToDevice, s), "cudaMemcpyAsync");
  check(cudaMemcpyAsync(dev.get() + 2 * B, cacheStarts.data(), B * 4, cudaMemcpyHostToDevice, s), "cudaMemcpyAsync");
  const int64_t rowWords = c.headDim * static_cast<int64_t>(dtypeSize(c.k.dtype)) / 2;
  for (int pass = 0; pass < 2; pass++) {
    check(grpoLaunch(cacheWriteKernel, dim3(static_cast<unsigned>(maxLen), static_cast<unsigned>(B)), dim3(kBlock), 0, s,
                     cptr<uint16_t>(pass == 0 ? c.k : c.v), static_cast<const int32_t*>(dev.get()), static_cast<const int32_t*>(dev.get() + B),
                     static_cast<const int32_t*>(dev.get() + 2 * B), c.kvHeads, c.capacity, rowWords, mptr<uint16_t>(pass == 0 ? c.kCache : c.vCache)),
          "the KV-cache write kernel launch");
  }
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
}

}  // namespace grpo::GRPO_CUDA_NS
