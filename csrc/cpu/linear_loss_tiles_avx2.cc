// The fused linear loss's tile loops for avx2 (compile flags in CMakeLists.txt).
#define GRPO_TILE_NS tiles_avx2
#define GRPO_TILE_ISA "avx2"
#include "cpu/linear_loss_tiles.inc"

namespace grpo::cpu {
const LinearLossTileKernels* linearLossTilesAvx2() { return &tiles_avx2::kTileKernels; }
}  // namespace grpo::cpu
