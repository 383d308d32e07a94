// The accuracy of the row kernels' exponential against float64, measured over every f32 input of the range
// the kernels use (docs/math-exp.md; bindings measureExp2Accuracy and kernelExp2, through the registry).
#pragma once
#include <cstdint>

#include "core/host_limits.h"
#include "cpu/kernels.h"

namespace grpo::cpu {

// Every `stride`-th f32 value d in [-inf, 0] (all 2^31 - 2^23 of them with stride 1), through
// k.exp2Values with the scale of temperature T, against std::exp2(d * log2(e) / T) in double.
ExpAccuracy measureExpAccuracy(const RowKernels& k, double temperature, uint32_t stride);

}  // namespace grpo::cpu
