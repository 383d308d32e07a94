// The row kernels' loops alone, outside Node and the backend (issue 19): one thread, thread CPU time (other
// processes on a loaded machine disturb it far less than wall time), the kernels of one instruction-set table
// called the way csrc/cpu/backend.cc calls them. Two parts:
//   1. "in cache": one row of `vIn` entries (default 32768: the row, its kept exponentials and its gradient fit
//      in L2) again and again: the compute cost per entry of each loop, no DRAM traffic.
//   2. "from memory": `rows` rows of V = 151936 (the bench's shape, one thread's share of 256 tokens on two)
//      from DRAM, two input sets alternated: tokenLogprobs' loop, the fused loss (rowStats of the first row,
//      rowStatsGrad of each next one, rowGrad of the last, one shared buffer), and the machine's own read and
//      streaming-copy kernels on the same bytes (1R and 1R+1W limits of this thread).
// Build and run from the repository root (x86-64; the flags of the avx512-bf16 table in CMakeLists.txt):
//   F="-O3 -fno-math-errno -std=c++20 -Icsrc -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512bf16 -mfma -mf16c -mbmi2"
//   g++ $F -Wno-uninitialized scripts/row-kernels-loop.cc csrc/cpu/kernels_avx512bf16.cc -o /tmp/row-loop
//   /tmp/row-loop [rows=128] [reps=5] [vIn=32768]
// vIn = 2048 puts the in-cache row, its kept exponentials and its gradient in L1 (one chunk); 32768 in L2. Add
// -DGRPO_PREFETCH_CHUNKS=N to try another prefetch distance; scripts/row-kernels-ops.mjs counts the loops' instructions.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <vector>

#include "cpu/kernels.h"

namespace grpo {
size_t dtypeSize(DType d) { return d == DType::F32 ? 4 : 2; }  // core/tensor.cc, without the rest of core
namespace cpu {
const RowKernels* rowKernelsAvx512Bf16();
}
}  // namespace grpo
using namespace grpo;
using namespace grpo::cpu;

namespace {
double cpuMs() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}
void fill(void* dst, DType d, int64_t n, unsigned seed) {
  srand(seed);
  for (int64_t i = 0; i < n; i++) {
    const float x = (static_cast<float>(rand()) / RAND_MAX - 0.5f) * 10;
    if (d == DType::F32) {
      static_cast<float*>(dst)[i] = x;
    } else {
      uint32_t u;
      std::memcpy(&u, &x, 4);
      static_cast<uint16_t*>(dst)[i] = static_cast<uint16_t>(u >> 16);
    }
  }
}
}  // namespace

int main(int argc, char** argv) {
  const int64_t rows = argc > 1 ? atoll(argv[1]) : 128, V = 151936;
  const int reps = argc > 2 ? atoi(argv[2]) : 5;
  const int64_t vIn = argc > 3 ? atoll(argv[3]) : 32768;
  const RowKernels* table = rowKernelsAvx512Bf16();
  if (!table) {
    std::printf("the avx512-bf16 table does not run on this CPU\n");
    return 1;
  }
  const RowKernels& K = *table;
  const ExpScale sc = expScaleFor(1.0);
  const RowChunks ch;
  for (DType D : {DType::F32, DType::BF16}) {
    const char* dn = D == DType::F32 ? "f32 " : "bf16";
    const size_t es = dtypeSize(D);
    // Per-thread buffers as in backend.cc (a std::vector: a page plus 16 bytes).
    std::vector<float> keep(std::max(V, vIn) + 64), cmax(V / kRowChunk + 2), factor(V / kRowChunk + 2, -1e-6f);
    const RowKeep rk{keep.data(), cmax.data()};
    GradParams gp{};
    gp.scale = sc;
    gp.chunks = ch;
    gp.target = 5;
    gp.targetGrad = 0.1f;
    auto best = [&](int n, auto f) {
      std::vector<double> ts;
      for (int r = 0; r < n; r++) {
        const double t0 = cpuMs();
        f(r);
        ts.push_back(cpuMs() - t0);
      }
      std::sort(ts.begin(), ts.end());
      return ts;
    };
    // 1. One row in cache.
    {
      std::vector<char> row(vIn * es);
      fill(row.data(), D, vIn, 1);
      char* out = static_cast<char*>(std::aligned_alloc(64, (vIn + 64) * 4));
      const int inner = static_cast<int>(std::max<int64_t>(1, 200000000 / vIn / 8));
      auto perEntry = [&](const char* name, auto f) {
        const auto ts = best(7, [&](int) { for (int k = 0; k < inner; k++) f(); });
        std::printf("%s in cache   %-30s %.3f ns/entry\n", dn, name, ts[0] * 1e6 / inner / vIn);
      };
      gp.stream = false;
      perEntry("tokenLogprobs (rowStats)", [&] { RowStats s; K.rowStats(row.data(), D, vIn, 7, sc, false, ch, nullptr, 0, ch.count(vIn), &s); });
      perEntry("rowStats, keep + entropy", [&] { RowStats s; K.rowStats(row.data(), D, vIn, 7, sc, true, ch, &rk, 0, ch.count(vIn), &s); });
      perEntry("rowGrad (no entropy)", [&] { K.rowGrad(row.data(), D, vIn, gp, keep.data(), factor.data(), out, D, 0, ch.count(vIn)); });
      perEntry("rowStatsGrad (fused loop)", [&] { RowStats s; K.rowStatsGrad(row.data(), D, vIn, 7, sc, ch, &rk, &s, gp, keep.data(), factor.data(), out, D); });
      std::free(out);
    }
    // 2. rows x V from memory.
    const size_t bytes = static_cast<size_t>(rows * V) * es, huge = size_t{1} << 21;
    char* in[2];
    for (int s = 0; s < 2; s++) {
      in[s] = static_cast<char*>(std::aligned_alloc(huge, (bytes + huge - 1) / huge * huge));
      fill(in[s], D, rows * V, 2 + s);
    }
    char* out = static_cast<char*>(std::aligned_alloc(huge, (bytes + huge - 1) / huge * huge));
    std::memset(out, 0, bytes);
    gp.stream = true;
    auto fromMemory = [&](const char* name, double limitMs, auto f) {
      const auto ts = best(2 * reps, [&](int r) { f(in[r & 1]); });
      std::printf("%s %lld rows  %-30s %.2f ms (median %.2f)", dn, static_cast<long long>(rows), name, ts[0], ts[ts.size() / 2]);
      if (limitMs > 0) std::printf("  %.2fx", ts[0] / limitMs);
      std::printf("\n");
      return ts[0];
    };
    const double read = fromMemory("readSum (1R)", 0, [&](char* x) { volatile double s = K.readSum(reinterpret_cast<float*>(x), bytes / 4); (void)s; });
    const double copy = fromMemory("streamCopy (1R+1W)", 0, [&](char* x) { K.streamCopy(reinterpret_cast<float*>(out), reinterpret_cast<float*>(x), bytes / 4); });
    fromMemory("tokenLogprobs  (x 1R)", read, [&](char* x) {
      for (int64_t i = 0; i < rows; i++) { RowStats s; K.rowStats(x + i * V * es, D, V, 7, sc, false, ch, nullptr, 0, ch.count(V), &s); }
    });
    fromMemory("fused loss     (x 1R+1W)", copy, [&](char* x) {
      RowStats s;
      K.rowStats(x, D, V, 7, sc, true, ch, &rk, 0, ch.count(V), &s);
      for (int64_t i = 1; i < rows; i++) {
        RowStats s2;
        K.rowStatsGrad(x + i * V * es, D, V, 7, sc, ch, &rk, &s2, gp, keep.data(), factor.data(), out + (i - 1) * V * es, D);
      }
      K.rowGrad(x, D, V, gp, keep.data(), factor.data(), out + (rows - 1) * V * es, D, 0, ch.count(V));
    });
    std::free(in[0]);
    std::free(in[1]);
    std::free(out);
  }
}
