// A fixed pool of worker threads, sized to the cores (GRPO_NUM_THREADS overrides), kept alive for the life
// of the process. parallelFor hands out index ranges dynamically, so rows of uneven cost (masked rows
// are free) still balance; the calling thread works too. Calls from several threads at once are
// serialized: each op already uses every core.
#pragma once
#include <cstdint>
#include <functional>

namespace grpo::cpu {

int threadCount();
void parallelFor(int64_t count, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& body);

}  // namespace grpo::cpu
