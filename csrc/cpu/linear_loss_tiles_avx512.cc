// The fused linear loss's tile loops for avx512 (compile flags in CMakeLists.txt).
#define GRPO_TILE_NS tiles_avx512
#define GRPO_TILE_ISA "avx512"
#include "cpu/linear_loss_tiles.inc"

namespace grpo::cpu {
const LinearLossTileKernels* linearLossTilesAvx512() { return &tiles_avx512::kTileKernels; }
}  // namespace grpo::cpu
