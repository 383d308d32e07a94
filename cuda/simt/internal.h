// Internals of the SIMT executor that its sources share (README.md has the user's view):
//   fibers.cc       the context switch, fiber stacks, and this module's thread-local block (static __shared__)
//   memory.cc       guarded device memory and the runtime calls that allocate, copy and set it
//   executor.cc     worker threads, the scheduler, barriers, warp collectives, clusters, launches
//   runtime_api.cc  the rest of the CUDA runtime API: errors, device properties, streams, events, attributes
// Kernels never include this header; they see simt.h only.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdarg>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <pthread.h>

#if !defined(__x86_64__) || defined(GRPO_SIMT_UCONTEXT)
#define GRPO_SIMT_USE_UCONTEXT 1
#include <ucontext.h>
#endif

#include "simt.h"

// The first frame of every fiber (executor.cc): runs the kernel for its CUDA thread, then leaves for good.
extern "C" void grpo_simt_fiber_main() __attribute__((visibility("hidden"), used, noreturn));

namespace grpo_simt {
namespace cuda_api {

// The stream and event handles of the emulated runtime.
struct CUstream_st {
  unsigned flags;
  int priority;
};
struct CUevent_st {
  unsigned flags;
  bool recorded;
  std::chrono::steady_clock::time_point when;
};

}  // namespace cuda_api

namespace detail {

using namespace cuda_api;

// ---- configuration --------------------------------------------------------------------------------------------
constexpr size_t kDefaultSmemPerBlock = 48 * 1024;   // without cudaFuncAttributeMaxDynamicSharedMemorySize
constexpr size_t kOptinSmemPerBlock = 227 * 1024;    // H100: cudaDevAttrMaxSharedMemoryPerBlockOptin
constexpr size_t kSmemPerSM = 228 * 1024;
constexpr size_t kDynAlign = 1024;
constexpr size_t kDynCanary = 256;   // guard bytes on both sides of dynamic shared memory
constexpr size_t kAllocAlign = 256;  // cudaMalloc's alignment guarantee
constexpr size_t kAllocGuard = 256;  // guard bytes on both sides of every device allocation
constexpr size_t kTotalDeviceMemory = size_t(80) << 30;
constexpr unsigned kMaxCluster = 16;
constexpr unsigned kMaxPortableCluster = 8;

// A size from the environment (decimal, or hex with 0x), or `fallback` when unset or malformed.
size_t env_size(const char* name, size_t fallback);
// The opt-in dynamic shared memory per block (GRPO_SIMT_MAX_SMEM_PER_BLOCK, default the H100's).
size_t optin_smem_limit();
// GRPO_SIMT_QUIET: launch failures are not printed to stderr (they are still returned).
extern std::atomic<bool> g_quiet;

// ---- small utilities --------------------------------------------------------------------------------------------
std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
inline std::string dim_str(dim3 d) { return format("(%u,%u,%u)", d.x, d.y, d.z); }

// "0-31,64,66-70": thread or lane sets stay short in messages.
inline std::string ranges(const std::vector<unsigned>& sorted) {
  std::string s;
  for (size_t i = 0; i < sorted.size();) {
    size_t j = i;
    while (j + 1 < sorted.size() && sorted[j + 1] == sorted[j] + 1) ++j;
    if (!s.empty()) s += ",";
    s += j == i ? format("%u", sorted[i]) : format("%u-%u", sorted[i], sorted[j]);
    i = j + 1;
  }
  return s;
}
inline std::string threads_str(const std::vector<unsigned>& sorted) {
  return (sorted.size() == 1 ? "thread " : "threads ") + ranges(sorted);
}
inline std::string lane_ranges(unsigned mask) {
  std::vector<unsigned> v;
  for (unsigned i = 0; i < 32; ++i)
    if (mask >> i & 1u) v.push_back(i);
  return ranges(v);
}

struct Site {
  const char* file = nullptr;
  int line = 0;
};
inline bool same_site(Site a, Site b) {
  return a.line == b.line && (a.file == b.file || (a.file != nullptr && b.file != nullptr && std::strcmp(a.file, b.file) == 0));
}
inline std::string site_str(Site s) {
  if (s.file == nullptr) return "?";
  const char* base = std::strrchr(s.file, '/');
  return format("%s:%d", base != nullptr ? base + 1 : s.file, s.line);
}

// splitmix64: a small, well-mixed generator; the executor's randomness needs speed and replayability only.
inline uint64_t mix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
inline uint64_t below(uint64_t& state, uint64_t n) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(mix64(state)) * n) >> 64);
}

// ---- per-thread API state -----------------------------------------------------------------------------------------
// Non-zero on the executor's worker threads, and kept across the 0xFF fills of their thread-local block:
// nothing else of this module's thread-local state may be touched there (kernel code calling the API).
extern thread_local unsigned char t_is_worker;

// Like CUDA's, the last error is per host thread (never a worker's).
extern thread_local cudaError_t t_last_error;
extern thread_local std::unique_ptr<std::string> t_last_detail;
extern thread_local cudaError_t t_last_detail_code;

// Records `code` and its message as this host thread's last error (never on a worker) and returns it.
cudaError_t record_error(cudaError_t code, std::string detail);

// ---- structures of a running grid ------------------------------------------------------------------------------------
struct Block;
struct Worker;
struct Run;

enum class FState : uint8_t { Idle, Ready, Running, WaitBlock, WaitWarp, WaitCluster, Done, Aborted };

// One cp.async of a thread, carried out when a cp.async.wait_group releases its group.
struct AsyncCopy {
  void* dst;
  const void* src;
  unsigned bytes, src_bytes;
};

struct Fiber : ThreadCtx {
  unsigned linear = 0, lane = 0, warp = 0;
  // cp.async of this thread: queued copies, and the end index in `copies` of each committed group.
  std::vector<AsyncCopy> copies;
  std::vector<size_t> copy_groups;
  Block* block = nullptr;
  Worker* worker = nullptr;
  FState state = FState::Idle;
  Site site;
  BarrierKind bar_kind = BarrierKind::Plain;
  WarpOp op = WarpOp::Sync;
  unsigned op_mask = 0;
  int op_param = 0;
  uint64_t in = 0, out = 0;
  int out_pred = 0;
  bool cluster_pending = false;
  uint64_t cluster_phase = 0;
#ifdef GRPO_SIMT_USE_UCONTEXT
  ucontext_t uc;
#else
  void* sp = nullptr;
#endif
};

struct WarpGroup {
  unsigned mask;
  unsigned arrived;
  WarpOp op;
  unsigned bytes;
  int width;
  Site site;
};

struct WarpState {
  unsigned existing = 0;  // lanes that exist (the last warp of a block may be partial)
  std::vector<WarpGroup> groups;
};

struct Block {
  Run* run = nullptr;
  uint3 idx{};
  unsigned rank = 0;
  Worker* worker = nullptr;
  unsigned nthreads = 0, ndone = 0;
  std::vector<Fiber*> fibers;
  std::vector<Fiber*> ready;
  std::vector<WarpState> warps;
  unsigned bar_count = 0;
  Site bar_site;
  BarrierKind bar_kind = BarrierKind::Plain;
  int bar_acc_count = 0;
  bool bar_acc_and = true, bar_acc_or = false;
  int bar_result = 0;
  unsigned char* dyn = nullptr;
  size_t dyn_bytes = 0;
};

struct Worker {
  unsigned index = 0;
  std::thread thread;
  pthread_t handle{};
  bool started = false;
  unsigned char* tls_base = nullptr;
  size_t tls_size = 0;
  std::vector<std::pair<size_t, size_t>> tls_fill;  // [begin, end) offsets filled with 0xFF at block start
  std::vector<Fiber*> pool;
  std::vector<std::pair<void*, size_t>> chunks;
  unsigned char* dyn_raw = nullptr;  // kDynCanary + capacity + kDynCanary bytes, 1024-aligned inside
  size_t dyn_capacity = 0;
#ifdef GRPO_SIMT_USE_UCONTEXT
  ucontext_t sched_uc;
#else
  void* sched_sp = nullptr;
#endif
};

struct Run {
  const LaunchRequest* req = nullptr;
  unsigned nblocks = 0;
  Block* blocks[kMaxCluster] = {};
  size_t total_ready = 0;
  uint64_t rng = 0;
  dim3 cluster_dim, cluster_idx, cluster_grid;
  uint64_t cb_phase = 0;
  unsigned cb_arrived = 0, cb_expected = 0;
  unsigned blocks_done = 0;
  bool finished = false;
  bool faulted = false;
  cudaError_t fault_code = cudaSuccess;
  std::string fault_msg;
  Fiber* handoff = nullptr;
};

inline Fiber* current_fiber() { return static_cast<Fiber*>(self()); }

// ---- fibers (fibers.cc) ---------------------------------------------------------------------------------------------
size_t page_size();
size_t fiber_header_bytes();  // the Fiber and the ThreadCtx slots before a fiber's guard page

// The x87 control word and MXCSR a fiber starts with: those of the worker that prepares it.
struct FpControl {
  uint16_t fcw = 0x037F;
  uint32_t mxcsr = 0x1F80;
};
FpControl current_fp_control();
// Sets up f's stack so that the next switch to it enters grpo_simt_fiber_main.
void prepare_fiber(Fiber* f, const FpControl& fp);

#ifndef GRPO_SIMT_USE_UCONTEXT
extern "C" {
// Saves the callee-saved state of the System V x86-64 ABI (rbx, rbp, r12-r15, the x87 control word and
// MXCSR) on the current stack, stores the stack pointer in *save_sp and resumes the context saved at
// next_sp. Everything else is caller-saved, so the compiler has already spilled it around the call.
void grpo_simt_switch(void** save_sp, void* next_sp) __attribute__((visibility("hidden")));
}
#endif

inline void switch_to_fiber(Worker* w, Fiber* f) {
#ifdef GRPO_SIMT_USE_UCONTEXT
  swapcontext(&w->sched_uc, &f->uc);
#else
  grpo_simt_switch(&w->sched_sp, f->sp);
#endif
}

inline void switch_to_scheduler(Fiber* f) {
#ifdef GRPO_SIMT_USE_UCONTEXT
  swapcontext(&f->uc, &f->worker->sched_uc);
#else
  grpo_simt_switch(&f->sp, f->worker->sched_sp);
#endif
}

// Locates this module's thread-local block on worker w (static __shared__ lives there), and the ranges
// fill_tls overwrites with 0xFF at each block start.
void discover_tls(Worker* w);
void fill_tls(Worker* w);
extern bool g_tls_warned;

// ---- functions' attributes ---------------------------------------------------------------------------------------------
struct FuncAttrs {
  size_t max_dynamic_smem = kDefaultSmemPerBlock;
  bool nonportable_cluster = false;
  int carveout = -1;
};
struct Registry {
  std::mutex func_mutex;
  std::map<const void*, FuncAttrs> func_attrs;
  std::mutex handle_mutex;
  std::set<const CUstream_st*> streams;
  std::set<const CUevent_st*> events;
  std::mutex name_mutex;
  std::map<const void*, std::string> names;
};
Registry& registry();
FuncAttrs func_attrs(const void* f);

// ---- kernel names (executor.cc) ----------------------------------------------------------------------------------------
// The kernel's demangled name (from the dynamic or the static symbol table), for messages.
std::string kernel_name(const void* kernel, const char* signature);

// ---- device memory -----------------------------------------------------------------------------------------------------
struct Allocation {
  unsigned char* raw;
  size_t size;
  size_t total;
};

inline unsigned char guard_byte(size_t i) { return static_cast<unsigned char>(0xA5u ^ (i * 0x3Bu) ^ (i >> 8)); }

// Guard bytes before and after dynamic shared memory.
const std::vector<unsigned char>& canary();

class Memory {
 public:
  std::mutex m;
  std::map<uintptr_t, Allocation> device;  // keyed by the pointer handed out
  std::set<void*> host;
  size_t allocated = 0;

  // Returns the allocation containing p, or nullptr.
  const std::pair<const uintptr_t, Allocation>* find(const void* p) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    auto it = device.upper_bound(a);
    if (it == device.begin()) return nullptr;
    --it;
    if (a >= it->first && a < it->first + std::max<size_t>(it->second.size, 1)) return &*it;
    return nullptr;
  }

  static void write_guards(uintptr_t user, const Allocation& al) {
    for (size_t i = 0; i < kAllocGuard; ++i) al.raw[i] = guard_byte(i);
    unsigned char* tail = reinterpret_cast<unsigned char*>(user) + al.size;
    const size_t tail_len = static_cast<size_t>(al.raw + al.total - tail);
    for (size_t i = 0; i < tail_len; ++i) tail[i] = guard_byte(kAllocGuard + i);
  }
  // Offset of the first damaged guard byte relative to the user pointer (negative: before it), or 0.
  static long long damaged_guard(uintptr_t user, const Allocation& al) {
    for (size_t i = 0; i < kAllocGuard; ++i)
      if (al.raw[i] != guard_byte(i)) return static_cast<long long>(i) - static_cast<long long>(kAllocGuard);
    const unsigned char* tail = reinterpret_cast<unsigned char*>(user) + al.size;
    const size_t tail_len = static_cast<size_t>(al.raw + al.total - tail);
    for (size_t i = 0; i < tail_len; ++i)
      if (tail[i] != guard_byte(kAllocGuard + i)) return static_cast<long long>(al.size + i) + 1;
    return 0;
  }
};

// Every device and pinned host allocation of the process.
Memory& memory();

// ---- streams and events (runtime_api.cc) --------------------------------------------------------------------------------
bool valid_stream(cudaStream_t s);
bool valid_event(cudaEvent_t e);

// ---- the executor (executor.cc) -------------------------------------------------------------------------------------------
// Serialises everything that touches device memory: launches, copies, sets, frees.
std::mutex& device_mutex();

}  // namespace detail
}  // namespace grpo_simt
