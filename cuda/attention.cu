// Causal grouped-query attention on CUDA (core/transformer_args.h): training forward and backward over packed
// sequences, and decode against a KV cache. Flash-style: the scores of a query tile against a key tile live in
// registers and shared memory only, with an online softmax across key tiles; the forward saves only the output
// and the log-sum-exp, and the backward recomputes the score tiles from them. No [L, L] matrix ever exists.
//
// This is the CUDA-core version (scalar FMAs from shared memory), correct for every head dimension that is a
// multiple of 16 up to 256 and the same source the SIMT executor runs; the tensor-core (mma.sync) version of the
// two tile products replaces the inner loops of attentionForwardKernel / the backward kernels once the project's
// warp-MMA helpers exist (see bench/README.md for where it stands against PyTorch's SDPA).
//
// Work split:
// - forward: block (64-query tile, q head, sequence), one thread per query row; key tiles of 32 rows are staged
//   in shared memory as f32 and read by every thread (broadcast); the thread's output row accumulates in
//   shared memory (padded rows: no bank conflicts).
// - backward: three kernels, no atomics (deterministic): delta = rowsum(dO ∘ O); dK/dV per (32-key tile, q head)
//   with one thread per key row, walking the query tiles at or after it; dQ per (32-query tile, q head) with one
//   thread per query row, walking the key tiles up to it. The q heads of a group write their dK/dV to an f32
//   scratch and a last kernel sums them in head order.
// - decode: block (q head, sequence); the scores of the cache row go to an f32 scratch, then one max, one sum
//   and a pass over V with one thread per output column.
#include <algorithm>
#include <cmath>
#include <limits>

#include "transformer_launchers.h"

namespace grpo::GRPO_CUDA_NS {

namespace {

constexpr int kFwdRows = 64;   // query rows per forward block (one thread each)
constexpr int kFwdKeys = 32;   // key rows per shared-memory tile
constexpr int kBwdRows = 32;   // rows per backward block (one thread each) and per staged tile
constexpr int kDecodeBlock = 128;

struct AttnArgs {
  const void* q;
  const void* k;
  const void* v;
  const void* out;      // forward output (backward: read)
  const void* gradOut;
  void* dst;            // forward: out; dQ kernel: gradQ
  float* lse;           // [T, Hq]
  const float* delta;   // [T, Hq]
  float* partialK;      // [T, Hq, D]
  float* partialV;
  const int32_t* seqStart;
  const int32_t* seqLen;
  int64_t Hq, Hkv, D;
  float scale, scale2;  // scale2 = scale · log2(e): scores in log2 units
};

template <typename T>
__device__ __forceinline__ float at(const void* base, int64_t i) { return toFloat(static_cast<const T*>(base)[i]); }

template <typename T>
__global__ void __launch_bounds__(kFwdRows) attentionForwardKernel(AttnArgs a) {
  GRPO_DYNAMIC_SHARED(float, smem);
  const int64_t D = a.D, Dp = D + 1;
  float* Qs = smem;                  // [kFwdRows][Dp], pre-scaled by scale2
  float* Os = Qs + kFwdRows * Dp;    // [kFwdRows][Dp]
  float* Ks = Os + kFwdRows * Dp;    // [kFwdKeys][D]
  float* Vs = Ks + kFwdKeys * D;     // [kFwdKeys][D]
  const int64_t b = blockIdx.z, h = blockIdx.y;
  const int64_t len = a.seqLen[b], start = a.seqStart[b];
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kFwdRows;
  if (q0 >= len) return;  // the whole block leaves together
  const int64_t kvh = h / (a.Hq / a.Hkv);
  const int r = threadIdx.x;
  const int64_t qi = q0 + r;
  const bool active = qi < len;
  for (int64_t e = threadIdx.x; e < kFwdRows * D; e += blockDim.x) {
    const int64_t row = e / D, d = e % D;
    Qs[row * Dp + d] = q0 + row < len ? at<T>(a.q, ((start + q0 + row) * a.Hq + h) * D + d) * a.scale2 : 0.0f;
    Os[row * Dp + d] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  const int64_t kEnd = len < q0 + kFwdRows ? len : q0 + kFwdRows;
  for (int64_t k0 = 0; k0 < kEnd; k0 += kFwdKeys) {
    __syncthreads();  // the previous tile is no longer read
    for (int64_t e = threadIdx.x; e < kFwdKeys * D; e += blockDim.x) {
      const int64_t row = e / D, d = e % D;
      const bool in = k0 + row < kEnd;
      const int64_t src = ((start + k0 + row) * a.Hkv + kvh) * D + d;
      Ks[e] = in ? at<T>(a.k, src) : 0.0f;
      Vs[e] = in ? at<T>(a.v, src) : 0.0f;
    }
    __syncthreads();
    const int64_t valid = active ? (qi - k0 + 1 < kFwdKeys ? qi - k0 + 1 : kFwdKeys) : 0;
    if (valid <= 0) continue;
    float s[kFwdKeys];
#pragma unroll
    for (int j = 0; j < kFwdKeys; j++) s[j] = 0.0f;
    for (int64_t d = 0; d < D; d++) {
      const float qd = Qs[r * Dp + d];
#pragma unroll
      for (int j = 0; j < kFwdKeys; j++) s[j] += qd * Ks[j * D + d];
    }
    float mx = -INFINITY;
#pragma unroll
    for (int j = 0; j < kFwdKeys; j++) mx = j < valid ? fmaxf(mx, s[j]) : mx;
    const float mNew = fmaxf(m, mx);
    const float alpha = m == -INFINITY ? 0.0f : exp2f(m - mNew);
    float sum = 0.0f;
#pragma unroll
    for (int j = 0; j < kFwdKeys; j++) {
      s[j] = j < valid ? exp2f(s[j] - mNew) : 0.0f;
      sum += s[j];
    }
    l = l * alpha + sum;
    m = mNew;
    for (int64_t d = 0; d < D; d++) {
      float o = Os[r * Dp + d] * alpha;
#pragma unroll
      for (int j = 0; j < kFwdKeys; j++) o += s[j] * Vs[j * D + d];
      Os[r * Dp + d] = o;
    }
  }
  if (!active) return;
  T* out = static_cast<T*>(a.dst) + ((start + qi) * a.Hq + h) * D;
  const float inv = 1.0f / l;
  for (int64_t d = 0; d < D; d++) out[d] = fromFloat<T>(Os[r * Dp + d] * inv);
  a.lse[(start + qi) * a.Hq + h] = (m + log2f(l)) * kLn2f;
}

__global__ void __launch_bounds__(kBlock) fillKernel(float* x, int64_t n, float value) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x) x[i] = value;
}

// delta[t, h] = Σ_d gradOut · out (every token; padding rows are never read).
template <typename T>
__global__ void __launch_bounds__(kBlock) deltaKernel(AttnArgs a, int64_t rows, float* delta) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows) return;
  float acc = 0.0f;
  for (int64_t d = 0; d < a.D; d++) acc += at<T>(a.gradOut, i * a.D + d) * at<T>(a.out, i * a.D + d);
  delta[i] = acc;
}

// dK, dV of one 32-key tile for one q head: thread j owns key k0 + j and walks the query rows at or after it.
template <typename T>
__global__ void __launch_bounds__(kBwdRows) attentionGradKVKernel(AttnArgs a) {
  GRPO_DYNAMIC_SHARED(float, smem);
  const int64_t D = a.D, Dp = D + 1;
  float* Ks = smem;                   // [kBwdRows][Dp]: this block's keys
  float* Vs = Ks + kBwdRows * Dp;
  float* dKs = Vs + kBwdRows * Dp;
  float* dVs = dKs + kBwdRows * Dp;
  float* Qt = dVs + kBwdRows * Dp;    // [kBwdRows][D]: the staged query tile
  float* dOt = Qt + kBwdRows * D;
  float* lse2 = dOt + kBwdRows * D;   // [kBwdRows]
  float* dl = lse2 + kBwdRows;        // [kBwdRows]
  const int64_t b = blockIdx.z, h = blockIdx.y;
  const int64_t len = a.seqLen[b], start = a.seqStart[b];
  const int64_t k0 = static_cast<int64_t>(blockIdx.x) * kBwdRows;
  if (k0 >= len) return;
  const int64_t kvh = h / (a.Hq / a.Hkv);
  const int j = threadIdx.x;
  const int64_t kj = k0 + j;
  const bool active = kj < len;
  for (int64_t e = threadIdx.x; e < kBwdRows * D; e += blockDim.x) {
    const int64_t row = e / D, d = e % D;
    const bool in = k0 + row < len;
    const int64_t src = ((start + k0 + row) * a.Hkv + kvh) * D + d;
    Ks[row * Dp + d] = in ? at<T>(a.k, src) : 0.0f;
    Vs[row * Dp + d] = in ? at<T>(a.v, src) : 0.0f;
    dKs[row * Dp + d] = 0.0f;
    dVs[row * Dp + d] = 0.0f;
  }
  for (int64_t q0 = k0; q0 < len; q0 += kBwdRows) {
    __syncthreads();
    for (int64_t e = threadIdx.x; e < kBwdRows * D; e += blockDim.x) {
      const int64_t row = e / D, d = e % D;
      const bool in = q0 + row < len;
      const int64_t src = ((start + q0 + row) * a.Hq + h) * D + d;
      Qt[e] = in ? at<T>(a.q, src) : 0.0f;
      dOt[e] = in ? at<T>(a.gradOut, src) : 0.0f;
    }
    for (int64_t row = threadIdx.x; row < kBwdRows; row += blockDim.x) {
      const bool in = q0 + row < len;
      lse2[row] = in ? a.lse[(start + q0 + row) * a.Hq + h] * kLog2e : 0.0f;
      dl[row] = in ? a.delta[(start + q0 + row) * a.Hq + h] : 0.0f;
    }
    __syncthreads();
    if (!active) continue;
    for (int i = 0; i < kBwdRows; i++) {
      const int64_t qi = q0 + i;
      if (qi >= len) break;
      if (qi < kj) continue;  // causal: query qi sees keys <= qi
      float s = 0.0f, dp = 0.0f;
      for (int64_t d = 0; d < D; d++) {
        s += Qt[i * D + d] * Ks[j * Dp + d];
        dp += dOt[i * D + d] * Vs[j * Dp + d];
      }
      const float p = exp2f(s * a.scale2 - lse2[i]);
      const float ds = p * (dp - dl[i]);
      for (int64_t d = 0; d < D; d++) {
        dVs[j * Dp + d] += p * dOt[i * D + d];
        dKs[j * Dp + d] += ds * Qt[i * D + d];
      }
    }
  }
  if (!active) return;
  const int64_t row = ((start + kj) * a.Hq + h) * D;
  for (int64_t d = 0; d < D; d++) {
    a.partialK[row + d] = dKs[j * Dp + d] * a.scale;
    a.partialV[row + d] = dVs[j * Dp + d];
  }
}

// dQ of one 32-query tile for one q head: thread i owns query q0 + i and walks the key tiles up to it.
template <typename T>
__global__ void __launch_bounds__(kBwdRows) attentionGradQKernel(AttnArgs a) {
  GRPO_DYNAMIC_SHARED(float, smem);
  const int64_t D = a.D, Dp = D + 1;
  float* Qs = smem;                   // [kBwdRows][Dp]
  float* dOs = Qs + kBwdRows * Dp;
  float* dQs = dOs + kBwdRows * Dp;
  float* Kt = dQs + kBwdRows * Dp;    // [kBwdRows][D]
  float* Vt = Kt + kBwdRows * D;
  const int64_t b = blockIdx.z, h = blockIdx.y;
  const int64_t len = a.seqLen[b], start = a.seqStart[b];
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kBwdRows;
  if (q0 >= len) return;
  const int64_t kvh = h / (a.Hq / a.Hkv);
  const int i = threadIdx.x;
  const int64_t qi = q0 + i;
  const bool active = qi < len;
  for (int64_t e = threadIdx.x; e < kBwdRows * D; e += blockDim.x) {
    const int64_t row = e / D, d = e % D;
    const bool in = q0 + row < len;
    const int64_t src = ((start + q0 + row) * a.Hq + h) * D + d;
    Qs[row * Dp + d] = in ? at<T>(a.q, src) : 0.0f;
    dOs[row * Dp + d] = in ? at<T>(a.gradOut, src) : 0.0f;
    dQs[row * Dp + d] = 0.0f;
  }
  const float l2 = active ? a.lse[(start + qi) * a.Hq + h] * kLog2e : 0.0f;
  const float dl = active ? a.delta[(start + qi) * a.Hq + h] : 0.0f;
  const int64_t kEnd = len < q0 + kBwdRows ? len : q0 + kBwdRows;
  for (int64_t k0 = 0; k0 < kEnd; k0 += kBwdRows) {
    __syncthreads();
    for (int64_t e = threadIdx.x; e < kBwdRows * D; e += blockDim.x) {
      const int64_t row = e / D, d = e % D;
      const bool in = k0 + row < kEnd;
      const int64_t src = ((start + k0 + row) * a.Hkv + kvh) * D + d;
      Kt[e] = in ? at<T>(a.k, src) : 0.0f;
      Vt[e] = in ? at<T>(a.v, src) : 0.0f;
    }
    __syncthreads();
    if (!active) continue;
    for (int jj = 0; jj < kBwdRows; jj++) {
      if (k0 + jj > qi) break;
      float s = 0.0f, dp = 0.0f;
      for (int64_t d = 0; d < D; d++) {
        s += Qs[i * Dp + d] * Kt[jj * D + d];
        dp += dOs[i * Dp + d] * Vt[jj * D + d];
      }
      const float ds = exp2f(s * a.scale2 - l2) * (dp - dl);
      for (int64_t d = 0; d < D; d++) dQs[i * Dp + d] += ds * Kt[jj * D + d];
    }
  }
  if (!active) return;
  T* gq = static_cast<T*>(a.dst) + ((start + qi) * a.Hq + h) * D;
  for (int64_t d = 0; d < D; d++) gq[d] = fromFloat<T>(dQs[i * Dp + d] * a.scale);
}

// grad[t, j, d] = Σ_{r < g} partial[t, j·g + r, d], in head order.
template <typename T>
__global__ void __launch_bounds__(kBlock) sumGroupsKernel(const float* partial, int64_t T_, int64_t Hkv, int64_t g, int64_t D, T* grad) {
  const int64_t n = T_ * Hkv * D;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t d = e % D, j = (e / D) % Hkv, t = e / (D * Hkv);
    float acc = 0.0f;
    for (int64_t r = 0; r < g; r++) acc += partial[((t * Hkv + j) * g + r) * D + d];
    grad[e] = fromFloat<T>(acc);
  }
}

struct DecodeArgs {
  const void* q;
  const void* kCache;
  const void* vCache;
  const int32_t* cacheLens;
  void* out;
  float* scores;  // [B, Hq, S]
  int64_t Hq, Hkv, D, S;
  float scale2;
};

template <typename T>
__global__ void __launch_bounds__(kDecodeBlock) attentionDecodeKernel(DecodeArgs a) {
  GRPO_DYNAMIC_SHARED(float, qs);  // [D], pre-scaled
  __shared__ float scratch[kBlock / 32];
  const int64_t h = blockIdx.x, b = blockIdx.y, D = a.D;
  const int64_t kvh = h / (a.Hq / a.Hkv), len = a.cacheLens[b];
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) qs[d] = at<T>(a.q, (b * a.Hq + h) * D + d) * a.scale2;
  __syncthreads();
  const int64_t base = (b * a.Hkv + kvh) * a.S * D;
  float* sc = a.scores + (b * a.Hq + h) * a.S;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
    float s = 0.0f;
    for (int64_t d = 0; d < D; d++) s += qs[d] * at<T>(a.kCache, base + j * D + d);
    sc[j] = s;
    mx = fmaxf(mx, s);
  }
  mx = blockMax(mx, scratch);
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
    const float p = exp2f(sc[j] - mx);
    sc[j] = p;
    sum += p;
  }
  sum = blockSum(sum, scratch);  // its barriers also publish every sc[j]
  const float inv = 1.0f / sum;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    float o = 0.0f;
    for (int64_t j = 0; j < len; j++) o += sc[j] * at<T>(a.vCache, base + j * D + d);
    static_cast<T*>(a.out)[(b * a.Hq + h) * D + d] = fromFloat<T>(o * inv);
  }
}

unsigned gridFor(int64_t n) { return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((n + kBlock - 1) / kBlock, 65536))); }

// The sequences on the device: [0, B) starts then [B, 2B) lengths; also the longest length.
struct DeviceSequences {
  DeviceSequences(const TensorRef& starts, const TensorRef& lens, int64_t batch, int64_t tokens, cudaStream_t s)
      : ranges(sequenceRanges(hostInts(starts, s), hostInts(lens, s), batch, tokens)), buffer(2 * ranges.size()) {
    if (ranges.size() > 65535) fail(ErrorCode::Shape, "at most 65535 sequences per call on CUDA", "seqLens", std::to_string(ranges.size()) + " sequences");
    for (const SequenceRange& r : ranges) {
      host.push_back(r.start);
      maxLen = std::max<int64_t>(maxLen, r.len);
    }
    for (const SequenceRange& r : ranges) host.push_back(r.len);
    if (!host.empty()) check(cudaMemcpyAsync(buffer.get(), host.data(), host.size() * 4, cudaMemcpyHostToDevice, s), "cudaMemcpyAsync");
  }
  const int32_t* starts() const { return buffer.get(); }
  const int32_t* lens() const { return buffer.get() + ranges.size(); }
  std::vector<SequenceRange> ranges;
  std::vector<int32_t> host;  // kept until the copy has run (the op synchronizes before returning)
  Scratch<int32_t> buffer;
  int64_t maxLen = 0;
};

template <typename... K>
void allowSmem(size_t bytes, void (*kernel)(K...)) {
  if (bytes > 48 * 1024) check(grpoSetMaxDynamicSmem(kernel, bytes), "cudaFuncSetAttribute");
}

template <typename F>
void byDtype(DType d, F&& f) {
  if (d == DType::BF16) f(static_cast<__nv_bfloat16*>(nullptr));
  else f(static_cast<float*>(nullptr));
}

}  // namespace

void runAttention(AttentionCall& c, cudaStream_t s) {
  DeviceSequences seqs(c.seqStarts, c.seqLens, c.batch, c.tokens, s);
  const int64_t rows = c.tokens * c.heads;
  if (rows == 0) return;
  check(cudaMemsetAsync(c.out.storage->data(), 0, static_cast<size_t>(rows * c.headDim) * dtypeSize(c.out.dtype), s), "cudaMemsetAsync");
  check(grpoLaunch(fillKernel, dim3(gridFor(rows)), dim3(kBlock), 0, s, c.lse.data<float>(), rows, -INFINITY), "the lse fill kernel launch");
  if (seqs.maxLen > 0) {
    AttnArgs a{};
    a.q = c.q.storage->data();
    a.k = c.k.storage->data();
    a.v = c.v.storage->data();
    a.dst = c.out.storage->data();
    a.lse = c.lse.data<float>();
    a.seqStart = seqs.starts();
    a.seqLen = seqs.lens();
    a.Hq = c.heads;
    a.Hkv = c.kvHeads;
    a.D = c.headDim;
    a.scale = c.scale;
    a.scale2 = c.scale * kLog2e;
    const size_t smem = static_cast<size_t>(2 * kFwdRows * (c.headDim + 1) + 2 * kFwdKeys * c.headDim) * sizeof(float);
    const dim3 grid(static_cast<unsigned>((seqs.maxLen + kFwdRows - 1) / kFwdRows), static_cast<unsigned>(c.heads), static_cast<unsigned>(seqs.ranges.size()));
    byDtype(c.q.dtype, [&](auto* tt) {
      using T = std::remove_pointer_t<decltype(tt)>;
      allowSmem(smem, attentionForwardKernel<T>);
      check(grpoLaunch(attentionForwardKernel<T>, grid, dim3(kFwdRows), smem, s, a), "the attention forward kernel launch");
    });
  }
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
}

void runAttentionBackward(AttentionBackwardCall& c, cudaStream_t s) {
  DeviceSequences seqs(c.seqStarts, c.seqLens, c.batch, c.tokens, s);
  const int64_t T = c.tokens, Hq = c.heads, Hkv = c.kvHeads, D = c.headDim, rows = T * Hq;
  if (rows == 0) return;
  Scratch<float> delta(static_cast<size_t>(rows)), partialK(static_cast<size_t>(rows * D)), partialV(static_cast<size_t>(rows * D));
  check(cudaMemsetAsync(partialK.get(), 0, static_cast<size_t>(rows * D) * 4, s), "cudaMemsetAsync");
  check(cudaMemsetAsync(partialV.get(), 0, static_cast<size_t>(rows * D) * 4, s), "cudaMemsetAsync");
  check(cudaMemsetAsync(c.gradQ.storage->data(), 0, static_cast<size_t>(rows * D) * dtypeSize(c.gradQ.dtype), s), "cudaMemsetAsync");
  AttnArgs a{};
  a.q = c.q.storage->data();
  a.k = c.k.storage->data();
  a.v = c.v.storage->data();
  a.out = c.out.storage->data();
  a.gradOut = c.gradOut.storage->data();
  a.dst = c.gradQ.storage->data();
  a.lse = c.lse.data<float>();
  a.delta = delta.get();
  a.partialK = partialK.get();
  a.partialV = partialV.get();
  a.seqStart = seqs.starts();
  a.seqLen = seqs.lens();
  a.Hq = Hq;
  a.Hkv = Hkv;
  a.D = D;
  a.scale = c.scale;
  a.scale2 = c.scale * kLog2e;
  byDtype(c.q.dtype, [&](auto* tt) {
    using T_ = std::remove_pointer_t<decltype(tt)>;
    check(grpoLaunch(deltaKernel<T_>, dim3(static_cast<unsigned>((rows + kBlock - 1) / kBlock)), dim3(kBlock), 0, s, a, rows, delta.get()),
          "the attention delta kernel launch");
    if (seqs.maxLen > 0) {
      const dim3 grid(static_cast<unsigned>((seqs.maxLen + kBwdRows - 1) / kBwdRows), static_cast<unsigned>(Hq), static_cast<unsigned>(seqs.ranges.size()));
      const size_t smemKV = static_cast<size_t>(4 * kBwdRows * (D + 1) + 2 * kBwdRows * D + 2 * kBwdRows) * sizeof(float);
      allowSmem(smemKV, attentionGradKVKernel<T_>);
      check(grpoLaunch(attentionGradKVKernel<T_>, grid, dim3(kBwdRows), smemKV, s, a), "the attention dK/dV kernel launch");
      const size_t smemQ = static_cast<size_t>(3 * kBwdRows * (D + 1) + 2 * kBwdRows * D) * sizeof(float);
      allowSmem(smemQ, attentionGradQKernel<T_>);
      check(grpoLaunch(attentionGradQKernel<T_>, grid, dim3(kBwdRows), smemQ, s, a), "the attention dQ kernel launch");
    }
    const int64_t n = T * Hkv * D;
    check(grpoLaunch(sumGroupsKernel<T_>, dim3(gridFor(n)), dim3(kBlock), 0, s, static_cast<const float*>(partialK.get()), T, Hkv, Hq / Hkv, D,
                     static_cast<T_*>(c.gradK.storage->data())),
          "the dK group-sum kernel launch");
    check(grpoLaunch(sumGroupsKernel<T_>, dim3(gridFor(n)), dim3(kBlock), 0, s, static_cast<const float*>(partialV.get()), T, Hkv, Hq / Hkv, D,
                     static_cast<T_*>(c.gradV.storage->data())),
          "the dV group-sum kernel launch");
  });
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
}

void runAttentionDecode(AttentionDecodeCall& c, cudaStream_t s) {
  const std::vector<int32_t> lens = hostInts(c.cacheLens, s);
  checkCacheLens(lens, c.capacity);
  if (c.batch == 0) return;
  if (c.batch > 65535) fail(ErrorCode::Shape, "at most 65535 sequences per call on CUDA", "q", "shape " + shapeString(c.q.shape));
  Scratch<float> scores(static_cast<size_t>(c.batch * c.heads * c.capacity));
  DecodeArgs a{c.q.storage->data(), c.kCache.storage->data(), c.vCache.storage->data(), c.cacheLens.data<int32_t>(), c.out.storage->data(),
               scores.get(), c.heads, c.kvHeads, c.headDim, c.capacity, c.scale * kLog2e};
  const size_t smem = static_cast<size_t>(c.headDim) * sizeof(float);
  byDtype(c.q.dtype, [&](auto* tt) {
    using T = std::remove_pointer_t<decltype(tt)>;
    check(grpoLaunch(attentionDecodeKernel<T>, dim3(static_cast<unsigned>(c.heads), static_cast<unsigned>(c.batch)), dim3(kDecodeBlock), smem, s, a),
          "the attention decode kernel launch");
  });
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
}

}  // namespace grpo::GRPO_CUDA_NS
