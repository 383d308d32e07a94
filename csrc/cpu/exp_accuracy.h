// The accuracy of the row kernels' exponential against float64, measured over every f32 input of the range
// the kernels use (docs/math-exp.md; bindings: measureExp2Accuracy, kernelExp2).
#pragma once
#include <cstdint>

#include "cpu/kernels.h"

namespace grpo::cpu {

struct ExpAccuracy {
  double checked = 0;        // inputs whose exact result is in the accurate range (t >= -124.99)
  double maxRelError = 0;    // max |got - exact| / exact over them
  double maxUlp = 0;         // the same in units of the last place of the exact result rounded to f32
  double meanRelError = 0;   // mean signed relative error (a bias would not average out over a row's sum)
  double rmsRelError = 0;
  double worstInput = 0;     // d at the largest ulp error
  double flushChecked = 0;   // inputs with t < -126.6 (down to d = -inf): the result must be exactly 0
  double flushViolations = 0;
};

// Every `stride`-th f32 value d in [-inf, 0] (all 2^31 - 2^23 of them with stride 1), through
// k.exp2Values with the scale of temperature T, against std::exp2(d * log2(e) / T) in double.
ExpAccuracy measureExpAccuracy(const RowKernels& k, double temperature, uint32_t stride);

}  // namespace grpo::cpu
