// The CPU side of the measurement calls (core/measure_args.h): benchmark inputs filled in place, spread over
// the thread pool. The bandwidth probe and the kernel timer are the Backend defaults here (none): the host's
// bandwidth is measureMachine's, and CPU ops are timed by the host clock.
#include "cpu/cpu_backend.h"
#include "cpu/thread_pool.h"
#include "cpu/kernels.h"

namespace grpo {

void cpu::CpuBackend::fillUniform(FillUniformCall& c) {
  const int64_t n = c.tensor.numel();
  const float low = c.low, span = c.high - c.low;
  const uint64_t seed = c.seed;
  void* data = c.tensor.storage->data();
  const DType dtype = c.tensor.dtype;
  parallelFor(n, 1 << 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++) {
      cpu::storeFloat(data, dtype, i, low + span * uniformAt(seed, static_cast<uint64_t>(i)));
    }
  });
}

}  // namespace grpo
