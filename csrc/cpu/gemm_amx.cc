// The AMX-BF16 GEMM micro-kernel (Sapphire Rapids and later Xeons): eight 1 KiB tile registers, of which four
// hold a 32 x 32 f32 block of C (2 x 2 tiles of 16 x 16), two hold A (16 rows x 32 k each) and two hold B
// (16 k pairs x 16 columns each, the pair layout of gemm_kernels.h). One step of 32 k is four tile loads and
// four TDPBF16PS, each 16 x 16 x 32 multiply-adds. C is loaded from and stored to the f32 workspace once per
// packed block of depth kc = 1024, so its traffic is small against 32 k-steps of tile products. kc = 1024
// rather than 512: the Qwen layer shapes (K = 896) then run in one depth block instead of two, and every C
// block is loaded and stored half as often; one thread, interleaved A/B rounds: +3-6% at K >= 896
// (1024x896x896 818 -> 871 GFLOP/s, gate/up forward 760 -> 784, down 783 -> 808, its weight gradient
// 633 -> 657); no change where K <= 512.
//
// Linux hands out the 8 KiB tile data state only to processes that ask (arch_prctl ARCH_REQ_XCOMP_PERM);
// enableAmx() asks once, and the dispatcher uses this kernel only if that succeeded. CMakeLists.txt sets
// this file's flags.
#if defined(__AMX_BF16__)
#include <immintrin.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#define GRPO_GEMM_ISA gemm_amx
#include "cpu/gemm_kernels.inc"

namespace grpo::cpu {
namespace gemm_amx {
namespace {

constexpr int kMr = 32, kNr = 32;

struct alignas(64) TileConfig {
  uint8_t palette;
  uint8_t startRow;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

void enter() {
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof cfg);
  cfg.palette = 1;
  for (int t = 0; t < 8; t++) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  // Through asm with a memory operand: GCC 12's _tile_loadconfig builtin does not tell the optimizer that it
  // reads the struct, and the stores of rows and column bytes were dropped as dead.
  __asm__ volatile("ldtilecfg %0" : : "m"(cfg));
}

void leave() { _tile_release(); }

}  // namespace
void enterTiles() { enter(); }
namespace {

// One 32 x 32 block of C over kcp of depth. TILED: A is a packed panel in tile order ([kcp/32][32][32],
// gemm_kernels.inc's packPanelsTiles: each step's two A tiles are consecutive 1 KiB blocks); otherwise A is 32
// rows of a row-major matrix read in place, row r at a + r * lda (elements), contiguous along k.
// B: the pair panel [kcp/2][32][2].
template <bool TILED>
inline void microAmxBody(int64_t kcp, const uint16_t* a, int64_t lda, const uint16_t* b, float* c, int64_t ldc, bool accumulate) {
  const long cStride = static_cast<long>(ldc * 4);
  const long aStride = TILED ? 64 : static_cast<long>(lda * 2);
  if (accumulate) {
    _tile_loadd(0, c, cStride);
    _tile_loadd(1, c + 16, cStride);
    _tile_loadd(2, c + 16 * ldc, cStride);
    _tile_loadd(3, c + 16 * ldc + 16, cStride);
  } else {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  }
  // Each load right before the first product that needs it: tile registers are not renamed, so a load waits
  // for the products still reading its register, and loading all four first left the products waiting on the
  // last load (12-15% slower on L2-resident panels, measured on Emerald Rapids).
  for (int64_t k = 0; k < kcp; k += 32) {
    const uint16_t* a0 = TILED ? a + k * 32 : a + k;
    const uint16_t* a1 = TILED ? a0 + 16 * 32 : a + 16 * lda + k;
    _tile_loadd(4, a0, aStride);
    _tile_loadd(6, b + k * kNr, 128);
    _tile_dpbf16ps(0, 4, 6);
    _tile_loadd(7, b + k * kNr + 32, 128);
    _tile_dpbf16ps(1, 4, 7);
    _tile_loadd(5, a1, aStride);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, c, cStride);
  _tile_stored(1, c + 16, cStride);
  _tile_stored(2, c + 16 * ldc, cStride);
  _tile_stored(3, c + 16 * ldc + 16, cStride);
}

void microAmxRows(int64_t kcp, const void* a, int64_t lda, const void* b, float* c, int64_t ldc, bool accumulate) {
  microAmxBody<false>(kcp, static_cast<const uint16_t*>(a), lda, static_cast<const uint16_t*>(b), c, ldc, accumulate);
}

void microAmx(int64_t kcp, const void* a, const void* b, float* c, int64_t ldc, bool accumulate) {
  microAmxBody<true>(kcp, static_cast<const uint16_t*>(a), 0, static_cast<const uint16_t*>(b), c, ldc, accumulate);
}

const GemmKernel kAmx{"amx-bf16", kMr, kNr, 32, 1024, kMr * 4, 2,
                      packATiles<kMr>, packBPairs<kNr>, microAmx, enter, leave, microAmxRows};

}  // namespace
}  // namespace gemm_amx

const GemmKernel* gemmKernelAmx() { return &gemm_amx::kAmx; }

bool enableAmx() {
#if defined(__linux__) && defined(SYS_arch_prctl)
  constexpr int kArchReqXcompPerm = 0x1023;
  constexpr int kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

}  // namespace grpo::cpu

namespace grpo::cpu {
namespace {
// Four independent accumulator tiles fed from two A and two B tiles that stay loaded: the TDPBF16PS rate alone.
double amxLoop(int64_t iters) {
  alignas(64) static uint16_t data[16 * 32];
  for (int i = 0; i < 16 * 32; i++) data[i] = 0x3c00;
  alignas(64) float out[16 * 16];
  gemm_amx::enterTiles();
  _tile_loadd(4, data, 64);
  _tile_loadd(5, data, 64);
  _tile_loadd(6, data, 64);
  _tile_loadd(7, data, 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int64_t it = 0; it < iters; it++) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, out, 64);
  _tile_release();
  __asm__ volatile("" : : "r"(out[0]));
  return static_cast<double>(iters) * 4 * 16 * 16 * 32 * 2;
}
}  // namespace
PeakLoop amxPeakLoop() { return amxLoop; }
}  // namespace grpo::cpu
#else
#include "cpu/gemm_kernels.h"
namespace grpo::cpu {
const GemmKernel* gemmKernelAmx() { return nullptr; }
bool enableAmx() { return false; }
PeakLoop amxPeakLoop() { return nullptr; }
}  // namespace grpo::cpu
#endif
