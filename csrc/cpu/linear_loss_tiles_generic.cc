// The fused linear loss's tile loops for generic (compile flags in CMakeLists.txt).
#define GRPO_TILE_NS tiles_generic
#define GRPO_TILE_ISA "generic"
#include "cpu/linear_loss_tiles.inc"

namespace grpo::cpu {
const LinearLossTileKernels* linearLossTilesGeneric() { return &tiles_generic::kTileKernels; }
}  // namespace grpo::cpu
