// The CPU GEMM driver (gemm.h): blocking, packing, threading and the dispatch among the micro-kernels of
// gemm_*.cc.
//
// Loop nest (the shape of BLIS's, with the k loop kept inside a task so that a task's f32 tile is finished
// when it hands it to the epilogue):
//
//   for each strip of NC columns of C:
//     pack B[:, strip] once (all of K when it fits a 32 MiB budget, else in blocks of depth), in parallel
//     for each task = MC rows x NT columns of the strip, spread over the pool:
//       for each block of KC depth: pack A[rows, block] (thread-private, stays in L2),
//         for each NR-panel of B (stays in L1) x each MR-panel of A: micro-kernel into the f32 tile
//       hand the finished tile to the epilogue
//
// Traffic: each element of B is packed once per call and then read by every task of its strip; each element
// of A is packed once per strip (NC >= 1024 columns of work per packed value). The f32 tile (MC x NT floats)
// lives in the thread's L2; the micro-kernel reads and writes it once per KC of depth.
//
// All index arithmetic is in int64_t: N * K past 2^31 elements is an ordinary case (an LM head's gradient).
#include "cpu/gemm.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "cpu/gemm_kernels.h"
#include "cpu/thread_pool.h"
#include "cpu/transformer_kernels.h"
#include "core/errors.h"

namespace grpo::cpu {

namespace {

// ---- dispatch ---------------------------------------------------------------------------------------------

enum Isa { kGeneric = 0, kAvx2 = 1, kAvx512 = 2, kAvx512Bf16 = 3, kAmx = 4 };

struct Features {
  bool avx2 = false, avx512 = false, avx512bf16 = false, amx = false;
  bool fastBf16Dot = false;  // vdpbf16ps at one zmm per cycle (AMD Zen 4 and later)
};

Features detect() {
  Features f;
#if defined(GRPO_X86)
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  f.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") && f.avx2;
  f.avx512bf16 = f.avx512 && __builtin_cpu_supports("avx512bf16");
  f.amx = f.avx512 && __builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-bf16");
  // vdpbf16ps does 32 multiply-adds: Zen 4 issues one zmm per cycle (2x its f32 FMA rate, 16 lanes x 1 FMA zmm a
  // cycle), but Intel's cores (Cooper Lake, Sapphire and Emerald Rapids) one per two cycles, half their f32 rate
  // (2 FMA ports): measured here with the peak probes, 78 GFLOP/s a core against 146 for vfmadd231ps zmm. So on
  // Intel the bf16 operands are widened to f32 while packing and the FMA kernel runs, unless AMX is there.
  f.fastBf16Dot = f.avx512bf16 && __builtin_cpu_is("amd");
#endif
  return f;
}

struct Choice {
  const GemmKernel* f32 = nullptr;
  const GemmKernel* bf16 = nullptr;
};

Choice choose() {
  const Features f = detect();
  int cap = kAmx;
  bool demandDot = false;
  if (const char* forced = std::getenv("GRPO_CPU_ISA"); forced && *forced) {
    // A cap, not a demand: GRPO_CPU_ISA=avx512 on an AMX machine runs the AVX-512 kernels; an instruction
    // set the CPU lacks (or a typo) leaves the automatic choice, as the row kernels do.
    const std::string s = forced;
    if (s == "generic") cap = kGeneric;
    else if (s == "avx2") cap = kAvx2;
    else if (s == "avx512") cap = kAvx512;
    else if (s == "avx512-bf16" || s == "avx512bf16") cap = kAvx512Bf16;  // the row kernels' name; the old spelling
    // Naming the vdpbf16ps level runs its kernel even where widening is faster (Intel): the way to test and
    // measure it on any CPU that has the instruction.
    demandDot = cap == kAvx512Bf16;
  }
  Choice c;
  if (cap >= kAvx512 && f.avx512 && gemmKernelAvx512()) {
    c.f32 = gemmKernelAvx512();
    c.bf16 = gemmKernelAvx512Bf16Widened();
  } else if (cap >= kAvx2 && f.avx2 && gemmKernelAvx2()) {
    c.f32 = gemmKernelAvx2();
    c.bf16 = gemmKernelAvx2Bf16();
  } else {
    c.f32 = gemmKernelGeneric();
    c.bf16 = gemmKernelGenericBf16();
  }
  if (cap >= kAvx512Bf16 && f.avx512bf16 && (f.fastBf16Dot || demandDot) && gemmKernelAvx512Bf16Dot()) c.bf16 = gemmKernelAvx512Bf16Dot();
  if (cap >= kAmx && f.amx && gemmKernelAmx() && enableAmx()) c.bf16 = gemmKernelAmx();
  return c;
}

const Choice& choice() {
  static const Choice c = choose();
  return c;
}

// ---- scratch ----------------------------------------------------------------------------------------------

// Grow-only, 64-byte aligned, one per pool thread (the pool's threads live as long as the process).
class Scratch {
 public:
  ~Scratch() { std::free(ptr_); }
  void* get(size_t bytes) {
    if (bytes > size_) {
      std::free(ptr_);
      size_ = (bytes + 4095) & ~size_t(4095);
      ptr_ = std::aligned_alloc(64, size_);
      if (!ptr_) {
        size_ = 0;
        counted_.resize(Device::Cpu, 0);
        throw Error(ErrorCode::Oom, "Expected " + std::to_string(bytes) + " bytes of GEMM scratch memory but the allocation failed");
      }
      counted_.resize(Device::Cpu, size_);
    }
    return ptr_;
  }

 private:
  void* ptr_ = nullptr;
  size_t size_ = 0;
  ScratchBytes counted_;  // held for the thread's life, counted in memoryInfo().cpu.scratchBytes
};

struct AlignedArray {
  explicit AlignedArray(size_t requested) {
    bytes = (requested + 63) & ~size_t(63);
    ptr = bytes ? hostAllocate(bytes, &capacity) : nullptr;
    if (bytes && !ptr) throw Error(ErrorCode::Oom, "Expected " + std::to_string(bytes) + " bytes for packed GEMM panels but the allocation failed");
    counted.resize(Device::Cpu, bytes);
  }
  ~AlignedArray() {
    if (ptr) hostRelease(ptr, capacity);
  }
  AlignedArray(const AlignedArray&) = delete;
  AlignedArray& operator=(const AlignedArray&) = delete;
  size_t bytes, capacity = 0;
  void* ptr;
  ScratchBytes counted;
};

int64_t roundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
int64_t ceilDiv(int64_t x, int64_t m) { return (x + m - 1) / m; }

constexpr int64_t kStripColumns = 2048;               // NC
constexpr int64_t kTaskColumns = 512;                 // NT at most
constexpr int64_t kPackedBBudget = 32ll << 20;        // bytes of packed B held at once
// Floats added to the row stride of the f32 tile (and of the partial sums): NT and NC are powers of two, and
// with a 2 KiB or 8 KiB stride the rows of a micro-kernel's C block (14 or 32 rows, read and written once per
// depth block) fell in two of the L1's 64 sets, evicting one another and the reused B panel. One cache line
// more per row spreads them over all sets: +2-10% on the AMX kernel with row-ordered A panels in L2, +0-2%
// with tile-ordered ones (standalone A/B, one thread), +0-3% end to end (bf16 linear, one thread, interleaved
// A/B rounds; f32 within the noise).
constexpr int64_t kTilePad = 16;
constexpr uint8_t kPanelEmpty = 0, kPanelPacking = 1, kPanelReady = 2;

inline void cpuRelax() {
#if defined(GRPO_X86)
  __builtin_ia32_pause();
#endif
}

void checkOperand(const GemmMatrix& m, int64_t rows, int64_t cols, const char* what) {
  if (m.dtype != DType::F32 && m.dtype != DType::BF16) fail(ErrorCode::DType, "f32 or bf16", what, dtypeName(m.dtype));
  if (rows > 0 && cols > 0 && !m.data) fail(ErrorCode::InvalidArg, "a matrix with data", what, "a null pointer");
  if (rows > 1 && cols > 1 && m.rowStride != 1 && m.colStride != 1) {
    fail(ErrorCode::InvalidArg, "a row-major or column-major matrix (one stride equal to 1)", what,
         "strides " + std::to_string(m.rowStride) + ", " + std::to_string(m.colStride));
  }
}

}  // namespace

const char* gemmKernelName(DType dtype) { return (dtype == DType::BF16 ? choice().bf16 : choice().f32)->name; }

int64_t gemmTileColumns() { return kTaskColumns; }

void gemm(const GemmProblem& p, const GemmEpilogue& epilogue) {
  const int64_t M = p.M, N = p.N, K = p.K;
  if (M < 0 || N < 0 || K < 0) fail(ErrorCode::Shape, "non-negative sizes", "gemm", std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K));
  checkOperand(p.A, M, K, "gemm A");
  checkOperand(p.B, K, N, "gemm B");
  if (K > 0 && !p.widen && p.A.dtype != p.B.dtype) {
    fail(ErrorCode::DType, "A and B of one dtype (or widen)", "gemm", std::string(dtypeName(p.A.dtype)) + " and " + dtypeName(p.B.dtype));
  }
  if (M == 0 || N == 0) return;
  // The f32 family's packers read f32 or bf16 per operand, so `widen` needs nothing more than the kernel choice.
  const GemmKernel& kern = *(p.A.dtype == DType::BF16 && !p.widen ? choice().bf16 : choice().f32);
  const int64_t MR = kern.mr, NR = kern.nr, KC = kern.kc, eb = kern.elementBytes;
  // The packed depth of one block: KC, or all of K when that is less. The stride between packed panels: with
  // KC = 1024 (AMX) and K = 256, panels spaced for 1024 used a quarter of each 64 KiB and the packed B
  // spanned 4x its bytes.
  const int64_t KCP = roundUp(std::min<int64_t>(KC, std::max<int64_t>(K, 1)), kern.kAlign);
  const int threads = threadCount();

  // Rows per task: MC, or fewer for a short M so that both tasks and rows split evenly.
  const int64_t mBlocks = ceilDiv(M, kern.mc);
  const int64_t MC = roundUp(ceilDiv(M, mBlocks), MR);

  // Depth held packed at once: all of K unless a strip of B at that depth would pass the budget.
  const int64_t stripMax = std::min(roundUp(N, NR), kStripColumns);
  int64_t NC = stripMax;
  int64_t kBlock = K;
  if (K > 0 && roundUp(K, KC) / KC * KCP * NC * eb > kPackedBBudget) {
    NC = std::max(NR, kPackedBBudget / (roundUp(K, KC) / KC * KCP * eb) / NR * NR);
    NC = std::min(NC, stripMax);
    if (roundUp(K, KC) / KC * KCP * NC * eb > kPackedBBudget) kBlock = std::max(KC, kPackedBBudget / (KCP * NC * eb) * KC);
  }
  const int64_t nK = K == 0 ? 1 : ceilDiv(K, kBlock);
  const int64_t pcPerBlock = ceilDiv(std::max<int64_t>(kBlock, 1), KC);

  // Columns per task: enough tasks for every thread (several each, so uneven ones balance).
  int64_t NT = std::min(kTaskColumns, NC);
  while (NT > NR && mBlocks * ceilDiv(NC, NT) < 4 * threads) NT = std::max(NR, roundUp(NT / 2, NR));

  // A read in place by the micro-kernel (AMX on a row-major bf16 A) instead of packed: packing copies every
  // element of A once per strip, which a thin B (few panels per task) does not amortize.
  const bool directA = kern.microRowsA && p.A.dtype == DType::BF16 && p.A.colStride == 1;

  AlignedArray packedB(static_cast<size_t>(pcPerBlock * (NC / NR) * KCP * NR * eb));
  // With the depth in several blocks, the partial sums of a strip live in one f32 array across them.
  std::unique_ptr<AlignedArray> partial;
  const int64_t Mp = roundUp(M, MR);
  // Per (depth block, panel) of the current strip and depth block: empty, being packed, ready.
  std::unique_ptr<std::atomic<uint8_t>[]> panelState(new std::atomic<uint8_t>[static_cast<size_t>(pcPerBlock * ceilDiv(NC, NR))]);
  const int64_t ldPartial = NC + kTilePad;
  if (nK > 1) partial = std::make_unique<AlignedArray>(static_cast<size_t>(Mp * ldPartial * 4));

  for (int64_t jc = 0; jc < N; jc += NC) {
    const int64_t nc = std::min(NC, N - jc);
    const int64_t ncPanels = ceilDiv(nc, NR);
    const int64_t tasksN = ceilDiv(nc, NT);
    for (int64_t kb = 0; kb < nK; kb++) {
      const int64_t kStart = kb * kBlock, kEnd = std::min(K, kStart + kBlock);
      const int64_t pcCount = ceilDiv(kEnd - kStart, KC);
      // B is packed on demand inside the tasks, not by a parallelFor of its own: a task packs each (depth block,
      // panel) of B it needs that no other task has claimed yet, or waits for the task packing it. One pool
      // dispatch per strip and depth block instead of two (a wake-up of the pool's threads is a futex and an
      // interprocessor interrupt on a VM, several microseconds: a tenth of a 256^3 AMX call), and a panel is
      // packed by the thread that first multiplies with it, while it is in that core's cache.
      const int64_t panelCount = pcCount * ncPanels;
      for (int64_t w = 0; w < panelCount; w++) panelState[w].store(kPanelEmpty, std::memory_order_relaxed);
      auto panelB = [&](int64_t pc, int64_t jr) -> const char* {
        char* dst = static_cast<char*>(packedB.ptr) + ((pc * (NC / NR) + jr) * KCP * NR) * eb;
        std::atomic<uint8_t>& state = panelState[pc * ncPanels + jr];
        uint8_t expected = kPanelEmpty;
        if (state.load(std::memory_order_acquire) == kPanelReady) return dst;
        if (state.compare_exchange_strong(expected, kPanelPacking, std::memory_order_acquire)) {
          const int64_t k0 = kStart + pc * KC, kc = std::min(KC, kEnd - k0);
          kern.packB(p.B, jc + jr * NR, std::min(NR, nc - jr * NR), k0, kc, roundUp(kc, kern.kAlign), dst);
          state.store(kPanelReady, std::memory_order_release);
          return dst;
        }
        // Another thread is packing it (a few microseconds of copying; it waits on nothing, so it finishes).
        for (int spins = 0; state.load(std::memory_order_acquire) != kPanelReady; spins++) {
          if (spins < 4096) cpuRelax();
          else std::this_thread::yield();
        }
        return dst;
      };
      const bool lastBlock = kb == nK - 1;
      parallelFor(mBlocks * tasksN, 1, [&](int64_t begin, int64_t end) {
        static thread_local Scratch aScratch, tileScratch;
        if (kern.enter) kern.enter();
        struct Leave {
          const GemmKernel& k;
          ~Leave() { if (k.leave) k.leave(); }
        } leave{kern};
        for (int64_t task = begin; task < end; task++) {
          const int64_t m0 = (task / tasksN) * MC, mc = std::min(MC, M - m0);
          if (mc <= 0) continue;
          const int64_t nLocal = (task % tasksN) * NT, nt = std::min(NT, nc - nLocal);
          const int64_t mPanels = ceilDiv(mc, MR), nPanels = ceilDiv(nt, NR);
          float* tile;
          int64_t ld;
          if (partial) {
            ld = ldPartial;
            tile = static_cast<float*>(partial->ptr) + m0 * ldPartial + nLocal;
          } else {
            ld = roundUp(NT, NR) + kTilePad;
            tile = static_cast<float*>(tileScratch.get(static_cast<size_t>(mPanels * MR * ld * 4)));
          }
          if (K == 0) {
            for (int64_t i = 0; i < mc; i++) std::memset(tile + i * ld, 0, static_cast<size_t>(nt) * 4);
          }
          char* packedA = static_cast<char*>(aScratch.get(static_cast<size_t>(mPanels * MR * KCP * eb)));
          for (int64_t pc = 0; pc < pcCount; pc++) {
            const int64_t k0 = kStart + pc * KC, kc = std::min(KC, kEnd - k0), kcp = roundUp(kc, kern.kAlign);
            const bool accumulate = kb > 0 || pc > 0;
            // Panels read in place (no padding needed: MR whole rows, whole k steps) come first; the rest packed.
            const int64_t direct = directA && kc == kcp ? mc / MR : 0;
            if (direct < mPanels) kern.packA(p.A, m0 + direct * MR, mc - direct * MR, k0, kc, kcp, packedA + direct * MR * kcp * eb);
            for (int64_t jr = 0; jr < nPanels; jr++) {
              const char* b = panelB(pc, nLocal / NR + jr);
              for (int64_t ir = 0; ir < mPanels; ir++) {
                float* c = tile + ir * MR * ld + jr * NR;
                if (ir < direct) {
                  const char* a = static_cast<const char*>(p.A.data) + ((m0 + ir * MR) * p.A.rowStride + k0) * eb;
                  kern.microRowsA(kcp, a, p.A.rowStride, b, c, ld, accumulate);
                } else {
                  kern.micro(kcp, packedA + ir * MR * kcp * eb, b, c, ld, accumulate);
                }
              }
            }
          }
          if (lastBlock) epilogue(GemmTile{m0, jc + nLocal, mc, nt, tile, ld});
        }
      });
    }
  }
}

void gemm(const GemmProblem& p, const GemmOutput& out) {
  if (!out.data && p.M > 0 && p.N > 0) fail(ErrorCode::InvalidArg, "an output matrix", "gemm C", "a null pointer");
  if (out.dtype != DType::F32 && out.dtype != DType::BF16) fail(ErrorCode::DType, "f32 or bf16", "gemm C", dtypeName(out.dtype));
  // The row loops are the transformer ops' vector kernels (conversion with round-to-nearest-even, accumulation),
  // compiled for the CPU's instruction set: a scalar loop here cost a third of the AMX products' time at 1024^3.
  const TransformerKernels& vec = transformerKernels();
  gemm(p, [&out, &vec](const GemmTile& t) {
    float row[kTaskColumns];  // a tile is at most gemmTileColumns() wide
    for (int64_t i = 0; i < t.rows; i++) {
      const float* v = t.values + i * t.ld;
      const int64_t offset = (t.m0 + i) * out.ld + t.n0;
      void* c = static_cast<char*>(out.data) + offset * (out.dtype == DType::F32 ? 4 : 2);
      if (!out.bias && !out.accumulate) {
        vec.convert(v, DType::F32, c, out.dtype, 0, t.cols);
        continue;
      }
      if (!out.bias && out.dtype == DType::F32) {
        vec.accumulateRow(static_cast<float*>(c), v, DType::F32, t.cols);
        continue;
      }
      // bias and/or accumulation: C + (AB + bias) in f32 in `row`, then one rounding to C's dtype.
      std::memcpy(row, v, static_cast<size_t>(t.cols) * 4);
      if (out.bias) vec.accumulateRow(row, static_cast<const char*>(out.bias) + t.n0 * (out.biasDtype == DType::F32 ? 4 : 2), out.biasDtype, t.cols);
      if (out.accumulate) vec.accumulateRow(row, c, out.dtype, t.cols);
      vec.convert(row, DType::F32, c, out.dtype, 0, t.cols);
    }
  });
}

}  // namespace grpo::cpu
