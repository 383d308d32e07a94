// The SIMT executor: runs a CUDA grid on the CPU, one fiber per CUDA thread.
//
// Execution model (cuda/simt/README.md has the user-facing version):
//  - A launch is executed by a pool of dedicated worker threads that lives as long as the process. Worker 0
//    runs the grid cluster by cluster (a plain launch is a grid of 1-block clusters) in a random order;
//    the blocks of one cluster run at the same time, block rank k on worker k, because a static
//    __shared__ variable is thread_local (simt.h) and so is per worker thread.
//  - Inside a block every CUDA thread is a fiber with its own stack. Fibers switch only inside
//    collectives (barriers, warp shuffles/votes, cluster barriers, __nanosleep); the next fiber to run is
//    drawn at random from all runnable fibers, from a per-launch seed, so the order of threads between two
//    barriers changes from run to run and replays exactly with the same seed.
//  - Exactly one fiber of the whole process runs at any time (blocks of a cluster pass a baton between
//    their workers), which makes atomics simple read-modify-writes and rules out host-level data races.
//  - At each block start its shared memory -- the worker's whole thread-local block of this module, which
//    holds every static __shared__ variable, and the dynamic shared memory -- is filled with 0xFF bytes
//    (NaN as float/half/bf16), so reading what no thread wrote shows up as NaN.
//  - A collective that can never complete (some threads exited, or wait elsewhere) is detected when no
//    fiber can run, and fails the launch with cudaErrorLaunchFailure and a message naming the kernel, the
//    block, the threads and the source lines. Failures never abort the process: the stuck fibers are
//    abandoned (their stacks are reused by the next launch).

#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <new>
#include <random>
#include <stdexcept>
#include <system_error>

#include <cxxabi.h>
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

namespace grpo_simt {
namespace detail {

// ---- configuration, messages, the per-thread last error, function attributes (declared in internal.h) ----------
size_t env_size(const char* name, size_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const unsigned long long x = std::strtoull(v, &end, 0);
  return (end != nullptr && *end == '\0') ? static_cast<size_t>(x) : fallback;
}

size_t optin_smem_limit() {
  static const size_t v = env_size("GRPO_SIMT_MAX_SMEM_PER_BLOCK", kOptinSmemPerBlock);
  return v;
}

std::atomic<bool> g_quiet{[] {
  const char* v = std::getenv("GRPO_SIMT_QUIET");
  return v != nullptr && *v != '\0' && *v != '0';
}()};

std::string format(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  va_list ap2;
  va_copy(ap2, ap);
  const int n = std::vsnprintf(nullptr, 0, fmt, ap);
  va_end(ap);
  std::string s(n > 0 ? static_cast<size_t>(n) : 0, '\0');
  if (n > 0) std::vsnprintf(&s[0], s.size() + 1, fmt, ap2);
  va_end(ap2);
  return s;
}

thread_local unsigned char t_is_worker;
thread_local cudaError_t t_last_error = cudaSuccess;
thread_local std::unique_ptr<std::string> t_last_detail;
thread_local cudaError_t t_last_detail_code = cudaSuccess;

cudaError_t record_error(cudaError_t code, std::string detail) {
  if (code == cudaSuccess || t_is_worker != 0) return code;
  t_last_error = code;
  if (!t_last_detail) t_last_detail.reset(new std::string);
  *t_last_detail = std::move(detail);
  t_last_detail_code = code;
  return code;
}

Registry& registry() {
  static Registry* r = new Registry;
  return *r;
}

FuncAttrs func_attrs(const void* f) {
  Registry& g = registry();
  std::lock_guard<std::mutex> lock(g.func_mutex);
  auto it = g.func_attrs.find(f);
  return it == g.func_attrs.end() ? FuncAttrs{} : it->second;
}

// ---- the order of blocks, and names in messages ------------------------------------------------------------------
namespace {

// A random bijection of [0, n) in O(1) memory (a grid may have 2^31 blocks): a bijection of the
// next power of two, iterated until the value falls below n (cycle walking).
class Permutation {
 public:
  Permutation(uint64_t n, uint64_t seed) : n_(n) {
    bits_ = 1;
    while (bits_ < 64 && (uint64_t(1) << bits_) < n) ++bits_;
    mask_ = bits_ >= 64 ? ~uint64_t(0) : (uint64_t(1) << bits_) - 1;
    uint64_t s = seed;
    for (auto& k : keys_) k = mix64(s);
    for (auto& m : mults_) m = mix64(s) | 1u;  // odd multipliers are invertible modulo 2^bits
  }
  uint64_t operator()(uint64_t i) const {
    if (n_ <= 1) return 0;
    uint64_t x = i;
    do {
      for (int r = 0; r < 3; ++r) {
        x = (x * mults_[r] + keys_[r]) & mask_;
        x ^= x >> (bits_ / 2 + 1);
      }
    } while (x >= n_);
    return x;
  }

 private:
  uint64_t n_, mask_;
  unsigned bits_;
  uint64_t keys_[3];
  uint64_t mults_[3];
};

std::string thread_str(const Fiber* f) {
  return format("block %s thread %s", dim_str(f->block->idx).c_str(), dim_str(f->thread_idx).c_str());
}

const char* op_name(WarpOp op) {
  switch (op) {
    case WarpOp::Sync: return "__syncwarp";
    case WarpOp::ShflIdx: return "__shfl_sync";
    case WarpOp::ShflUp: return "__shfl_up_sync";
    case WarpOp::ShflDown: return "__shfl_down_sync";
    case WarpOp::ShflXor: return "__shfl_xor_sync";
    case WarpOp::Ballot: return "__ballot_sync";
    case WarpOp::Any: return "__any_sync";
    case WarpOp::All: return "__all_sync";
    case WarpOp::MatchAny: return "__match_any_sync";
    case WarpOp::MatchAll: return "__match_all_sync";
    case WarpOp::ReduceAddU: return "__reduce_add_sync";
    case WarpOp::ReduceMinU:
    case WarpOp::ReduceMinS: return "__reduce_min_sync";
    case WarpOp::ReduceMaxU:
    case WarpOp::ReduceMaxS: return "__reduce_max_sync";
    case WarpOp::ReduceAnd: return "__reduce_and_sync";
    case WarpOp::ReduceOr: return "__reduce_or_sync";
    case WarpOp::ReduceXor: return "__reduce_xor_sync";
    case WarpOp::Matrix: return "a warp matrix instruction (ldmatrix/mma.sync)";
  }
  return "?";
}
const char* barrier_name(BarrierKind k) {
  switch (k) {
    case BarrierKind::Plain: return "__syncthreads()";
    case BarrierKind::Count: return "__syncthreads_count()";
    case BarrierKind::And: return "__syncthreads_and()";
    case BarrierKind::Or: return "__syncthreads_or()";
  }
  return "?";
}
bool is_shuffle(WarpOp op) {
  return op == WarpOp::ShflIdx || op == WarpOp::ShflUp || op == WarpOp::ShflDown || op == WarpOp::ShflXor;
}

}  // namespace

// ---- kernel names ----------------------------------------------------------------------------------------------------
std::string demangle(const char* s) {
  int status = 0;
  char* d = abi::__cxa_demangle(s, nullptr, nullptr, &status);
  std::string r = (status == 0 && d != nullptr) ? d : s;
  std::free(d);
  return r;
}

// Kernels usually have hidden visibility in the addon, so dladdr cannot name them; the static symbol
// table of the module can, unless it was stripped.
std::string symtab_name(const char* path, uintptr_t fbase, uintptr_t addr) {
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  struct stat st;
  std::string result;
  if (fstat(fd, &st) == 0 && st.st_size > static_cast<off_t>(sizeof(Elf64_Ehdr))) {
    const size_t size = static_cast<size_t>(st.st_size);
    void* map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map != MAP_FAILED) {
      const auto* base = static_cast<const unsigned char*>(map);
      Elf64_Ehdr eh;
      std::memcpy(&eh, base, sizeof eh);
      const bool ok = std::memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 && eh.e_ident[EI_CLASS] == ELFCLASS64 &&
                      eh.e_shoff != 0 && eh.e_shoff + size_t(eh.e_shnum) * sizeof(Elf64_Shdr) <= size &&
                      eh.e_phoff + size_t(eh.e_phnum) * sizeof(Elf64_Phdr) <= size;
      if (ok) {
        uintptr_t first_load = ~uintptr_t(0);
        for (unsigned i = 0; i < eh.e_phnum; ++i) {
          Elf64_Phdr ph;
          std::memcpy(&ph, base + eh.e_phoff + i * sizeof ph, sizeof ph);
          if (ph.p_type == PT_LOAD) first_load = std::min<uintptr_t>(first_load, ph.p_vaddr & ~uintptr_t(4095));
        }
        const uintptr_t load_bias = first_load == ~uintptr_t(0) ? fbase : fbase - first_load;
        const uintptr_t target = addr - load_bias;
        for (unsigned i = 0; i < eh.e_shnum && result.empty(); ++i) {
          Elf64_Shdr sh;
          std::memcpy(&sh, base + eh.e_shoff + i * sizeof sh, sizeof sh);
          if (sh.sh_type != SHT_SYMTAB || sh.sh_link >= eh.e_shnum || sh.sh_offset + sh.sh_size > size) continue;
          Elf64_Shdr strh;
          std::memcpy(&strh, base + eh.e_shoff + sh.sh_link * sizeof strh, sizeof strh);
          if (strh.sh_offset + strh.sh_size > size) continue;
          for (size_t k = 0; k + sizeof(Elf64_Sym) <= sh.sh_size; k += sizeof(Elf64_Sym)) {
            Elf64_Sym sym;
            std::memcpy(&sym, base + sh.sh_offset + k, sizeof sym);
            if (ELF64_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_value != target || sym.st_name >= strh.sh_size) continue;
            const char* name = reinterpret_cast<const char*>(base + strh.sh_offset + sym.st_name);
            if (std::memchr(name, '\0', strh.sh_size - sym.st_name) == nullptr) continue;
            result = demangle(name);
            break;
          }
        }
      }
      munmap(map, size);
    }
  }
  close(fd);
  return result;
}

std::string kernel_signature_args(const char* pretty) {
  // "... signature_of() [with KArgs = {float*, int}]" -> "(float*, int)"
  const char* p = pretty != nullptr ? std::strstr(pretty, "= {") : nullptr;
  if (p == nullptr) return "(...)";
  std::string s(p + 3);
  const size_t end = s.rfind('}');
  if (end != std::string::npos) s.resize(end);
  return "(" + s + ")";
}

std::string kernel_name(const void* kernel, const char* signature) {
  Registry& g = registry();
  std::lock_guard<std::mutex> lock(g.name_mutex);
  auto it = g.names.find(kernel);
  if (it != g.names.end()) return it->second;
  std::string name;
  Dl_info info{};
  if (dladdr(kernel, &info) != 0) {
    if (info.dli_sname != nullptr && info.dli_saddr == kernel) name = demangle(info.dli_sname);
    if (name.empty() && info.dli_fname != nullptr) {
      name = symtab_name(info.dli_fname, reinterpret_cast<uintptr_t>(info.dli_fbase), reinterpret_cast<uintptr_t>(kernel));
      if (name.empty())
        name = symtab_name("/proc/self/exe", reinterpret_cast<uintptr_t>(info.dli_fbase), reinterpret_cast<uintptr_t>(kernel));
    }
  }
  if (name.empty()) name = format("<kernel at %p>", kernel) + kernel_signature_args(signature);
  g.names.emplace(kernel, name);
  return name;
}

namespace {

// ---- seeds ------------------------------------------------------------------------------------------------------------------
std::atomic<uint64_t> g_base_seed{[] {
  const char* v = std::getenv("GRPO_SIMT_SEED");
  if (v != nullptr && *v != '\0') return static_cast<uint64_t>(std::strtoull(v, nullptr, 0));
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd() ^
         static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
}()};
std::atomic<uint64_t> g_launch_count{0};
std::atomic<uint64_t> g_blocks_executed{0};

// Progress of the running launch, watched by the watchdog: fibers only yield at collectives, so a thread
// in an endless loop (typically spinning on a flag that another block would set, but blocks run one at a
// time) stops the whole launch. The watchdog cannot end it; it says where it is stuck.
std::atomic<uint64_t> g_switches{0};
std::atomic<const Fiber*> g_running{nullptr};
std::atomic<const LaunchRequest*> g_active{nullptr};

unsigned watchdog_seconds() {
  static const unsigned v = static_cast<unsigned>(env_size("GRPO_SIMT_WATCHDOG_S", 60));
  return v;
}

// ---- the executor -------------------------------------------------------------------------------------------------------------
class Executor {
 public:
  // Never destroyed (see registry()); shutdown() releases its threads and memory on request.
  static Executor& get() {
    static Executor* e = new Executor;
    return *e;
  }

  // Serialises everything that touches device memory: launches, copies, sets, frees.
  std::mutex device_mutex;

  bool on_worker_thread() const { return t_is_worker != 0; }

  // Runs one launch (device_mutex held by the caller). Returns the fault, if any, in `run_`.
  void execute(const LaunchRequest& req, uint64_t seed) {
    const unsigned n = req.cluster.x * req.cluster.y * req.cluster.z;
    ensure_workers(n);
    const unsigned nthreads = req.block.x * req.block.y * req.block.z;
    for (unsigned k = 0; k < n; ++k) {
      ensure_fibers(workers_[k].get(), nthreads);
      ensure_dynamic(workers_[k].get(), req.dynamic_smem);
    }
    start_watchdog();
    g_active.store(&req, std::memory_order_release);
    std::unique_lock<std::mutex> lock(m_);
    job_ = &req;
    job_seed_ = seed;
    job_taken_ = false;
    job_done_ = false;
    cv_.notify_all();
    cv_.wait(lock, [&] { return job_done_; });
    job_ = nullptr;
    g_active.store(nullptr, std::memory_order_release);
  }

  const Run& last_run() const { return run_; }

  void start_watchdog() {
    if (watchdog_.joinable() || watchdog_seconds() == 0) return;
    watchdog_ = std::thread([this] { watchdog_main(); });
  }

  void watchdog_main() {
    using clock = std::chrono::steady_clock;
    uint64_t last = g_switches.load();
    clock::time_point since = clock::now();
    bool reported = false;
    std::unique_lock<std::mutex> lock(m_);
    while (!stopping_) {
      cv_.wait_for(lock, std::chrono::seconds(1));
      const LaunchRequest* req = g_active.load(std::memory_order_acquire);
      const uint64_t now = g_switches.load(std::memory_order_relaxed);
      if (req == nullptr || now != last) {
        last = now;
        since = clock::now();
        reported = false;
        continue;
      }
      const auto still = static_cast<unsigned>(std::chrono::duration_cast<std::chrono::seconds>(clock::now() - since).count());
      if (still < watchdog_seconds() || reported) continue;
      reported = true;
      const Fiber* f = g_running.load(std::memory_order_acquire);
      lock.unlock();
      const std::string name = kernel_name(req->kernel, req->signature);
      std::fprintf(stderr,
                   "SIMT watchdog: kernel %s has run for %u s without reaching a barrier or shuffle: block %s thread %s "
                   "is in an endless loop, or spins on a value that another block would write (blocks run one at a "
                   "time; only the blocks of one cluster run together, and a spinning thread must call __nanosleep "
                   "to let them run). Set GRPO_SIMT_WATCHDOG_S=0 to silence this.\n",
                   name.c_str(), still, f != nullptr ? dim_str(f->block_idx).c_str() : "?",
                   f != nullptr ? dim_str(f->thread_idx).c_str() : "?");
      lock.lock();
    }
  }

  // Stops the workers and frees their fibers (device_mutex held by the caller, so no launch runs).
  void shutdown() {
    {
      std::lock_guard<std::mutex> lock(m_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) {
      if (w->thread.joinable()) w->thread.join();
      for (Fiber* f : w->pool) f->~Fiber();
      for (auto& c : w->chunks) munmap(c.first, c.second);
      std::free(w->dyn_raw);
    }
    workers_.clear();
    blocks_.clear();
    if (watchdog_.joinable()) watchdog_.join();
    std::lock_guard<std::mutex> lock(m_);
    stopping_ = false;
  }

  void fiber_exited(Fiber* f);
  void make_ready(Fiber* f) {
    f->state = FState::Ready;
    f->block->ready.push_back(f);
    ++f->block->run->total_ready;
  }

 private:
  Executor() = default;

  void ensure_workers(unsigned n) {
    while (workers_.size() < n) {
      auto w = std::make_unique<Worker>();
      w->index = static_cast<unsigned>(workers_.size());
      blocks_.push_back(std::make_unique<Block>());
      Worker* wp = w.get();
      workers_.push_back(std::move(w));
      wp->thread = std::thread([this, wp] { worker_main(wp); });
      std::unique_lock<std::mutex> lock(m_);
      cv_.wait(lock, [&] { return wp->started; });
      if (wp->tls_base == nullptr && !g_tls_warned) {
        g_tls_warned = true;
        std::fprintf(stderr,
                     "SIMT: warning: could not locate this module's thread-local block; static __shared__ memory "
                     "will not be filled with NaN at block start\n");
      }
    }
  }

  static void ensure_fibers(Worker* w, unsigned n) {
    if (w->pool.size() >= n) return;
    const size_t page = page_size();
    const size_t header = fiber_header_bytes();
    const size_t count = std::max<size_t>(n - w->pool.size(), 32);
    const size_t bytes = count * kFiberBytes;
    void* raw = mmap(nullptr, bytes + kFiberBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                     -1, 0);
    if (raw == MAP_FAILED) throw std::bad_alloc();
    // Keep a kFiberBytes-aligned window: the alignment is what lets a kernel find its ThreadCtx.
    const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
    const uintptr_t aligned = (start + kFiberBytes - 1) & ~(kFiberBytes - 1);
    if (aligned > start) munmap(raw, aligned - start);
    const uintptr_t end = start + bytes + kFiberBytes;
    if (end > aligned + bytes) munmap(reinterpret_cast<void*>(aligned + bytes), end - (aligned + bytes));
    w->chunks.emplace_back(reinterpret_cast<void*>(aligned), bytes);
    for (size_t i = 0; i < count; ++i) {
      unsigned char* region = reinterpret_cast<unsigned char*>(aligned + i * kFiberBytes);
      // A guard page between the header and the stack turns a stack overflow into a fault instead of a
      // silently corrupted header.
      mprotect(region + header, page, PROT_NONE);
      Fiber* f = new (region + ctx_offset(reinterpret_cast<uintptr_t>(region))) Fiber();
      f->magic = kCtxMagic;
      f->worker = w;
      w->pool.push_back(f);
    }
  }

  static void ensure_dynamic(Worker* w, size_t bytes) {
    const size_t need = (bytes + kDynAlign - 1) / kDynAlign * kDynAlign;
    if (w->dyn_raw != nullptr && w->dyn_capacity >= need) return;
    std::free(w->dyn_raw);
    w->dyn_raw = nullptr;
    w->dyn_capacity = std::max(need, kDynAlign);
    if (posix_memalign(reinterpret_cast<void**>(&w->dyn_raw), kDynAlign, kDynAlign + w->dyn_capacity + kDynCanary) != 0)
      throw std::bad_alloc();
  }

  void worker_main(Worker* w) {
    w->handle = pthread_self();
    discover_tls(w);
    {
      std::lock_guard<std::mutex> lock(m_);
      w->started = true;
    }
    cv_.notify_all();
    for (;;) {
      std::unique_lock<std::mutex> lock(m_);
      cv_.wait(lock, [&] {
        return stopping_ || (w->index == 0 && job_ != nullptr && !job_taken_) ||
               (w->index != 0 && run_active_ && turn_ == static_cast<int>(w->index));
      });
      if (stopping_) return;
      if (w->index == 0) {
        job_taken_ = true;
        lock.unlock();
        run_grid(*job_, job_seed_);
        lock.lock();
        job_done_ = true;
        cv_.notify_all();
      } else {
        lock.unlock();
        schedule(w);
      }
    }
  }

  void run_grid(const LaunchRequest& req, uint64_t seed) {
    const dim3 g = req.grid, c = req.cluster;
    const uint64_t ncx = g.x / c.x, ncy = g.y / c.y, ncz = g.z / c.z;
    const uint64_t nclusters = ncx * ncy * ncz;
    run_ = Run{};
    uint64_t s = seed;
    const Permutation order(nclusters, mix64(s));
    for (uint64_t i = 0; i < nclusters; ++i) {
      const uint64_t k = order(i);
      const dim3 cidx(static_cast<unsigned>(k % ncx), static_cast<unsigned>((k / ncx) % ncy),
                      static_cast<unsigned>(k / (ncx * ncy)));
      run_cluster(req, cidx, dim3(static_cast<unsigned>(ncx), static_cast<unsigned>(ncy), static_cast<unsigned>(ncz)),
                  seed ^ (k * 0xD1B54A32D192ED03ull));
      if (run_.faulted) break;
    }
  }

  void run_cluster(const LaunchRequest& req, dim3 cidx, dim3 cgrid, uint64_t seed) {
    Run& r = run_;
    r.req = &req;
    r.nblocks = req.cluster.x * req.cluster.y * req.cluster.z;
    r.total_ready = 0;
    r.rng = seed;
    r.cluster_dim = req.cluster;
    r.cluster_idx = cidx;
    r.cluster_grid = cgrid;
    r.cb_phase = 0;
    r.cb_arrived = 0;
    const unsigned nthreads = req.block.x * req.block.y * req.block.z;
    r.cb_expected = r.nblocks * nthreads;
    r.blocks_done = 0;
    r.finished = false;
    r.handoff = nullptr;
    const unsigned nwarps = (nthreads + 31) / 32;
    const FpControl fp = current_fp_control();
    for (unsigned rank = 0; rank < r.nblocks; ++rank) {
      Worker* w = workers_[rank].get();
      Block& b = *blocks_[rank];
      r.blocks[rank] = &b;
      b.run = &r;
      b.rank = rank;
      b.worker = w;
      const unsigned rx = rank % req.cluster.x, ry = (rank / req.cluster.x) % req.cluster.y,
                     rz = rank / (req.cluster.x * req.cluster.y);
      b.idx = uint3{cidx.x * req.cluster.x + rx, cidx.y * req.cluster.y + ry, cidx.z * req.cluster.z + rz};
      b.nthreads = nthreads;
      b.ndone = 0;
      b.bar_count = 0;
      b.warps.resize(nwarps);
      for (unsigned wi = 0; wi < nwarps; ++wi) {
        const unsigned lanes = std::min(32u, nthreads - wi * 32);
        b.warps[wi].existing = lanes == 32 ? 0xFFFFFFFFu : (1u << lanes) - 1u;
        b.warps[wi].groups.clear();
      }
      b.fibers.resize(nthreads);
      b.ready.clear();
      for (unsigned t = 0; t < nthreads; ++t) {
        Fiber* f = w->pool[t];
        f->thread_idx = uint3{t % req.block.x, (t / req.block.x) % req.block.y, t / (req.block.x * req.block.y)};
        f->block_idx = b.idx;
        f->block_dim = req.block;
        f->grid_dim = req.grid;
        f->linear = t;
        f->lane = t % 32;
        f->warp = t / 32;
        f->block = &b;
        f->state = FState::Ready;
        f->cluster_pending = false;
        f->cluster_phase = 0;
        f->copies.clear();
        f->copy_groups.clear();
        prepare_fiber(f, fp);
        b.fibers[t] = f;
        b.ready.push_back(f);
      }
      r.total_ready += nthreads;
      if (w->tls_base != nullptr) fill_tls(w);
      b.dyn = w->dyn_raw + kDynAlign;
      b.dyn_bytes = req.dynamic_smem;
      std::memset(b.dyn, 0xFF, b.dyn_bytes);
      std::memcpy(b.dyn - kDynCanary, canary().data(), kDynCanary);
      std::memcpy(b.dyn + b.dyn_bytes, canary().data() + kDynCanary, kDynCanary);
    }
    if (r.nblocks == 1) {
      schedule(workers_[0].get());  // worker 0 alone: no baton to pass
    } else {
      {
        std::lock_guard<std::mutex> lock(m_);
        run_active_ = true;
        turn_ = 0;
      }
      schedule(workers_[0].get());
      std::lock_guard<std::mutex> lock(m_);
      run_active_ = false;
      turn_ = -1;
    }
    g_blocks_executed.fetch_add(r.nblocks, std::memory_order_relaxed);
    if (r.faulted) return;
    for (unsigned rank = 0; rank < r.nblocks && !r.faulted; ++rank) {
      const Block& b = *r.blocks[rank];
      const unsigned char* pattern = canary().data();
      if (std::memcmp(b.dyn - kDynCanary, pattern, kDynCanary) == 0 &&
          std::memcmp(b.dyn + b.dyn_bytes, pattern + kDynCanary, kDynCanary) == 0)
        continue;
      long long at = 0;
      for (size_t i = 0; i < kDynCanary && at == 0; ++i)
        if (b.dyn[-static_cast<ptrdiff_t>(kDynCanary - i)] != pattern[i]) at = -static_cast<long long>(kDynCanary - i);
      for (size_t i = 0; i < kDynCanary && at == 0; ++i)
        if (b.dyn[b.dyn_bytes + i] != pattern[kDynCanary + i]) at = static_cast<long long>(b.dyn_bytes + i);
      r.faulted = true;
      r.fault_code = cudaErrorIllegalAddress;
      r.fault_msg = format("block %s wrote outside its %zu bytes of dynamic shared memory (at byte offset %lld)",
                           dim_str(b.idx).c_str(), b.dyn_bytes, at);
    }
  }

  // Picks and removes the next fiber to run: usually one of this worker's block (switching workers costs
  // a thread handoff), sometimes any runnable fiber of the cluster, so blocks still interleave.
  Fiber* pick(Run& r, Worker* w) {
    if (r.total_ready == 0) return nullptr;
    Block* own = r.blocks[w->index];
    Block* from = nullptr;
    if (!own->ready.empty() && (r.nblocks == 1 || (mix64(r.rng) & 7u) != 0)) {
      from = own;
    } else {
      uint64_t k = below(r.rng, r.total_ready);
      for (unsigned i = 0; i < r.nblocks; ++i) {
        if (k < r.blocks[i]->ready.size()) {
          from = r.blocks[i];
          break;
        }
        k -= r.blocks[i]->ready.size();
      }
    }
    const size_t i = static_cast<size_t>(below(r.rng, from->ready.size()));
    Fiber* f = from->ready[i];
    from->ready[i] = from->ready.back();
    from->ready.pop_back();
    --r.total_ready;
    return f;
  }

  void pass_baton(Worker* from, unsigned to) {
    std::unique_lock<std::mutex> lock(m_);
    turn_ = static_cast<int>(to);
    cv_.notify_all();
    if (from->index == 0) cv_.wait(lock, [&] { return turn_ == 0 || stopping_; });
  }

  // The scheduling loop of a worker holding the baton. Worker 0 returns when the cluster has finished;
  // the others return when they hand the baton on.
  void schedule(Worker* w) {
    Run& r = run_;
    for (;;) {
      if (r.finished) {
        if (w->index != 0) pass_baton(w, 0);
        return;
      }
      Fiber* f = nullptr;
      if (r.handoff != nullptr && r.handoff->worker == w) {
        f = r.handoff;
        r.handoff = nullptr;
      } else {
        f = pick(r, w);
      }
      if (f == nullptr) {
        resolve_idle(r);
        continue;
      }
      if (f->worker != w) {
        r.handoff = f;
        pass_baton(w, f->worker->index);
        if (w->index != 0) return;
        continue;
      }
      f->state = FState::Running;
      g_switches.fetch_add(1, std::memory_order_relaxed);
      g_running.store(f, std::memory_order_release);
      switch_to_fiber(w, f);
      if (r.faulted) r.finished = true;
    }
  }

  // No fiber can run: either every thread has exited, or the ones left wait for something that can no
  // longer happen.
  void resolve_idle(Run& r) {
    r.finished = true;
    if (r.blocks_done == r.nblocks) return;
    r.faulted = true;
    r.fault_code = cudaErrorLaunchFailure;
    r.fault_msg = describe_deadlock(r);
  }

  static std::string describe_deadlock(const Run& r) {
    std::string msg = "a barrier can never complete, so the kernel would hang on a GPU.";
    for (unsigned rank = 0; rank < r.nblocks; ++rank) {
      const Block& b = *r.blocks[rank];
      if (b.ndone == b.nthreads) continue;
      std::map<std::string, std::vector<unsigned>> by_state;
      bool any_barrier = false, any_exited = false;
      for (const Fiber* f : b.fibers) {
        std::string what;
        switch (f->state) {
          case FState::Done: what = "exited"; any_exited = true; break;
          case FState::WaitBlock:
            what = format("wait at %s at %s", barrier_name(f->bar_kind), site_str(f->site).c_str());
            any_barrier = true;
            break;
          case FState::WaitWarp:
            what = format("wait in %s(mask 0x%08x) at %s", op_name(f->op), f->op_mask, site_str(f->site).c_str());
            break;
          case FState::WaitCluster:
            what = format("wait at the cluster barrier at %s", site_str(f->site).c_str());
            break;
          default: what = "(runnable)"; break;
        }
        by_state[what].push_back(f->linear);
      }
      msg += format("\n  block %s:", dim_str(b.idx).c_str());
      if (any_barrier && any_exited) msg += " not every thread reaches the barrier (some exited before it);";
      for (auto& kv : by_state) msg += format("\n    %s: %s", threads_str(kv.second).c_str(), kv.first.c_str());
      for (size_t wi = 0; wi < b.warps.size(); ++wi) {
        for (const WarpGroup& g : b.warps[wi].groups) {
          const unsigned need = g.mask & b.warps[wi].existing;
          msg += format("\n    warp %zu: %s(mask 0x%08x) at %s: lanes %s never arrived", wi, op_name(g.op), g.mask,
                        site_str(g.site).c_str(), lane_ranges(need & ~g.arrived).c_str());
        }
      }
    }
    if (r.cb_arrived > 0)
      msg += format("\n  cluster barrier: %u of %u threads arrived", r.cb_arrived, r.cb_expected);
    return msg;
  }

  std::mutex m_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::unique_ptr<Block>> blocks_;
  const LaunchRequest* job_ = nullptr;
  uint64_t job_seed_ = 0;
  bool job_taken_ = false, job_done_ = false;
  bool run_active_ = false;
  int turn_ = -1;
  bool stopping_ = false;
  Run run_;
  std::thread watchdog_;
};

// ---- fiber side --------------------------------------------------------------------------------------------------------
void set_fault(Fiber* f, cudaError_t code, const std::string& what) {
  Run& r = *f->block->run;
  if (r.faulted) return;
  r.faulted = true;
  r.fault_code = code;
  r.fault_msg = thread_str(f) + ": " + what;
}

// Leaves the fiber for good. Callers build their messages in scopes that end before this call, since
// the fiber's stack is abandoned with whatever it still owns.
[[noreturn]] void abandon_fiber(Fiber* f) {
  f->state = FState::Aborted;
  switch_to_scheduler(f);
  __builtin_unreachable();
}

[[noreturn]] void fiber_fault(Fiber* f, cudaError_t code, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
[[noreturn]] void fiber_fault(Fiber* f, cudaError_t code, const char* fmt, ...) {
  {
    va_list ap;
    va_start(ap, fmt);
    char buf[1024];
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    set_fault(f, code, buf);
  }
  abandon_fiber(f);
}

void suspend(Fiber* f) { switch_to_scheduler(f); }

void poison_block(Block& b) {
  if (b.worker->tls_base != nullptr) fill_tls(b.worker);
  std::memset(b.dyn, 0xFF, b.dyn_bytes);
}

void Executor::fiber_exited(Fiber* f) {
  Block& b = *f->block;
  f->state = FState::Done;
  ++b.ndone;
  if (b.ndone == b.nthreads) {
    Run& r = *b.run;
    ++r.blocks_done;
    // Distributed shared memory of an exited block is gone on a GPU; reads through map_shared_rank
    // after that now see NaN instead of stale data.
    if (r.nblocks > 1 && r.blocks_done < r.nblocks) poison_block(b);
  }
}

}  // namespace

std::mutex& device_mutex() { return Executor::get().device_mutex; }

}  // namespace detail
}  // namespace grpo_simt

extern "C" void grpo_simt_fiber_main() {
  using namespace grpo_simt::detail;
  Fiber* f = current_fiber();
  bool threw = false;
  try {
    const grpo_simt::detail::LaunchRequest& req = *f->block->run->req;
    req.invoke(req.closure);
  } catch (...) {
    threw = true;
  }
  if (threw) fiber_fault(f, grpo_simt::cuda_api::cudaErrorLaunchFailure, "a C++ exception escaped the kernel");
  Executor::get().fiber_exited(f);
  switch_to_scheduler(f);
  __builtin_unreachable();
}

namespace grpo_simt {
namespace detail {

using namespace cuda_api;

// ---- collectives: barriers, warp operations, clusters (what kernels call through simt.h) ----------------------------
void not_in_kernel() {
  throw std::logic_error(
      "SIMT: a device built-in (threadIdx, __syncthreads, a shuffle, ...) was used outside a kernel launched on the "
      "SIMT executor");
}

int block_barrier(BarrierKind kind, int pred, const char* file, int line) {
  Fiber* f = current_fiber();
  Block& b = *f->block;
  const Site s{file, line};
  if (b.bar_count == 0) {
    b.bar_site = s;
    b.bar_kind = kind;
    b.bar_acc_count = 0;
    b.bar_acc_and = true;
    b.bar_acc_or = false;
  } else if (!same_site(b.bar_site, s) || b.bar_kind != kind) {
    {
      std::vector<unsigned> waiting;
      for (const Fiber* x : b.fibers)
        if (x->state == FState::WaitBlock) waiting.push_back(x->linear);
      set_fault(f, cudaErrorLaunchFailure,
                format("reaches %s at %s, but the barrier the block is gathering at is %s at %s (reached by %s): all "
                       "threads of a block must meet at the same barrier (__syncthreads in divergent code)",
                       barrier_name(kind), site_str(s).c_str(), barrier_name(b.bar_kind), site_str(b.bar_site).c_str(),
                       threads_str(waiting).c_str()));
    }
    abandon_fiber(f);
  }
  ++b.bar_count;
  b.bar_acc_count += pred != 0 ? 1 : 0;
  b.bar_acc_and = b.bar_acc_and && pred != 0;
  b.bar_acc_or = b.bar_acc_or || pred != 0;
  f->state = FState::WaitBlock;
  f->site = s;
  f->bar_kind = kind;
  if (b.bar_count == b.nthreads) {
    switch (kind) {
      case BarrierKind::Plain: b.bar_result = 0; break;
      case BarrierKind::Count: b.bar_result = b.bar_acc_count; break;
      case BarrierKind::And: b.bar_result = b.bar_acc_and ? 1 : 0; break;
      case BarrierKind::Or: b.bar_result = b.bar_acc_or ? 1 : 0; break;
    }
    b.bar_count = 0;
    Executor& ex = Executor::get();
    for (Fiber* x : b.fibers)
      if (x->state == FState::WaitBlock) ex.make_ready(x);
  }
  suspend(f);
  // Still this barrier's result: the next barrier cannot complete before this thread arrives at it.
  return b.bar_result;
}

namespace {

uint64_t poison(unsigned bytes) { return bytes >= 8 ? ~uint64_t(0) : (uint64_t(1) << (8 * bytes)) - 1; }

// ---- warp matrix instructions --------------------------------------------------------------------------------
// Fragment layouts of the PTX ISA ("Matrix fragments for mma.m16n8k16", "ldmatrix"), with g = lane / 4 (the
// group) and t = lane % 4 (the thread in the group); each 32-bit register holds two 16-bit values, the
// lower-indexed one in the low half:
//   A (16 x 16, row):  a0 = A[g][2t..2t+1]   a1 = A[g+8][2t..2t+1]   a2 = A[g][2t+8..2t+9]   a3 = A[g+8][2t+8..2t+9]
//   B (16 x 8, col):   b0 = B[2t..2t+1][g]   b1 = B[2t+8..2t+9][g]
//   C, D (16 x 8 f32): c0, c1 = C[g][2t], C[g][2t+1]   c2, c3 = C[g+8][2t], C[g+8][2t+1]
//   ldmatrix x{n}: matrix j (8 x 8 of 16-bit values) has its rows at the addresses of lanes 8j..8j+7; lane
//   receives r[j] = M_j[g][2t..2t+1], or with .trans M_j[2t][g] and M_j[2t+1][g].

float bf16_bits_to_float(uint32_t h) {
  const uint32_t u = h << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

float f16_bits_to_float(uint32_t h) {
  const uint32_t sign = (h & 0x8000u) << 16, em = h & 0x7fffu;
  uint32_t u;
  if (em >= 0x7c00u) {
    u = sign | 0x7f800000u | ((em & 0x3ffu) << 13);
  } else if (em < 0x0400u) {
    const float v = static_cast<float>(em) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  } else {
    u = sign | ((em << 13) + ((127u - 15u) << 23));
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t half_of(uint32_t reg, int hi) { return static_cast<uint16_t>(hi ? reg >> 16 : reg & 0xffffu); }

void complete_matrix(Fiber* const* lanes, unsigned need) {
  Fiber* self_fiber = current_fiber();
  if (need != 0xFFFFFFFFu)
    fiber_fault(self_fiber, cudaErrorLaunchFailure,
                "a warp matrix instruction (ldmatrix/mma.sync) executed by lanes 0x%08x only: the .aligned "
                "instructions need all 32 lanes of the warp (a block whose size is a multiple of 32)", need);
  MatrixLane* in[32];
  for (unsigned l = 0; l < 32; ++l) in[l] = reinterpret_cast<MatrixLane*>(static_cast<uintptr_t>(lanes[l]->in));
  for (unsigned l = 1; l < 32; ++l) {
    if (in[l]->kind != in[0]->kind)
      fiber_fault(self_fiber, cudaErrorLaunchFailure,
                  "lanes of a warp execute different matrix instructions together (kind 0x%x in lane 0, 0x%x in "
                  "lane %u at %s:%d): every lane must execute the same ldmatrix or mma.sync",
                  in[0]->kind, in[l]->kind, l, lanes[l]->site.file != nullptr ? lanes[l]->site.file : "?", lanes[l]->site.line);
  }
  const uint32_t kind = in[0]->kind;
  if ((kind & 0xf) == kLdmatrix && kind < 0x1000) {
    const unsigned count = (kind >> 4) & 0xf;
    const bool trans = (kind >> 8) & 1;
    for (unsigned r = 0; r < 8 * count; ++r) {
      const void* p = in[r]->addr;
      if (!is_shared(p) || (reinterpret_cast<uintptr_t>(p) & 15u) != 0)
        fiber_fault(self_fiber, cudaErrorLaunchFailure,
                    "ldmatrix: lane %u names row address %p, which is not a 16-byte aligned shared-memory address", r, p);
    }
    for (unsigned l = 0; l < 32; ++l) {
      const unsigned g = l / 4, t = l % 4;
      for (unsigned j = 0; j < count; ++j) {
        uint16_t lo, hi;
        if (!trans) {
          const uint16_t* row = static_cast<const uint16_t*>(in[8 * j + g]->addr);
          lo = row[2 * t];
          hi = row[2 * t + 1];
        } else {
          lo = static_cast<const uint16_t*>(in[8 * j + 2 * t]->addr)[g];
          hi = static_cast<const uint16_t*>(in[8 * j + 2 * t + 1]->addr)[g];
        }
        in[l]->out[j] = static_cast<uint32_t>(lo) | static_cast<uint32_t>(hi) << 16;
      }
    }
    return;
  }
  if (kind == kMmaBf16 || kind == kMmaF16) {
    float (*cvt)(uint32_t) = kind == kMmaBf16 ? bf16_bits_to_float : f16_bits_to_float;
    float A[16][16], B[16][8], C[16][8];
    for (unsigned l = 0; l < 32; ++l) {
      const unsigned g = l / 4, t = l % 4;
      const MatrixLane& x = *in[l];
      for (int h = 0; h < 2; ++h) {
        A[g][2 * t + h] = cvt(half_of(x.a[0], h));
        A[g + 8][2 * t + h] = cvt(half_of(x.a[1], h));
        A[g][2 * t + 8 + h] = cvt(half_of(x.a[2], h));
        A[g + 8][2 * t + 8 + h] = cvt(half_of(x.a[3], h));
        B[2 * t + h][g] = cvt(half_of(x.b[0], h));
        B[2 * t + 8 + h][g] = cvt(half_of(x.b[1], h));
        C[g][2 * t + h] = x.c[h];
        C[g + 8][2 * t + h] = x.c[2 + h];
      }
    }
    // Products of 16-bit floats are exact in double, and so is their sum over 16 terms to well within f32's
    // precision: one rounding to f32 at the end, as close to the tensor cores' fused sum as a CPU gets.
    for (unsigned l = 0; l < 32; ++l) {
      const unsigned g = l / 4, t = l % 4;
      const unsigned rows[4] = {g, g, g + 8, g + 8}, cols[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
      for (int i = 0; i < 4; ++i) {
        double acc = C[rows[i]][cols[i]];
        for (int k = 0; k < 16; ++k) acc += static_cast<double>(A[rows[i]][k]) * static_cast<double>(B[k][cols[i]]);
        const float d = static_cast<float>(acc);
        std::memcpy(&in[l]->out[i], &d, 4);
      }
    }
    return;
  }
  fiber_fault(self_fiber, cudaErrorLaunchFailure, "unknown warp matrix instruction kind 0x%x", kind);
}

// Computes every participating lane's result once all of them have arrived (PTX semantics for the
// source lane of shuffles: out of the segment -> own value; a lane outside the mask -> undefined, given
// here as all-ones bits, a NaN for floating-point values).
void complete_group(Block& b, unsigned warp, const WarpGroup& g) {
  const WarpState& ws = b.warps[warp];
  const unsigned need = g.mask & ws.existing;
  Fiber* lanes[32] = {};
  for (unsigned l = 0; l < 32; ++l)
    if (need >> l & 1u) lanes[l] = b.fibers[warp * 32 + l];
  unsigned ballot = 0;
  for (unsigned l = 0; l < 32; ++l)
    if (lanes[l] != nullptr && lanes[l]->in != 0) ballot |= 1u << l;
  const int width = g.width;
  const unsigned segmask = static_cast<unsigned>(32 - width) & 31u;
  for (unsigned l = 0; l < 32; ++l) {
    Fiber* f = lanes[l];
    if (f == nullptr) continue;
    f->out_pred = 0;
    switch (g.op) {
      case WarpOp::Sync: f->out = 0; break;
      case WarpOp::ShflIdx:
      case WarpOp::ShflUp:
      case WarpOp::ShflDown:
      case WarpOp::ShflXor: {
        const int lane = static_cast<int>(l);
        const int cval = g.op == WarpOp::ShflUp ? 0 : 31;
        const int max_lane = (lane & static_cast<int>(segmask)) | (cval & ~static_cast<int>(segmask));
        const int min_lane = lane & static_cast<int>(segmask);
        const int bval = f->op_param;
        int j = lane;
        bool in_range = false;
        switch (g.op) {
          case WarpOp::ShflUp: j = lane - bval; in_range = j >= max_lane; break;
          case WarpOp::ShflDown: j = lane + bval; in_range = j <= max_lane; break;
          case WarpOp::ShflXor: j = lane ^ bval; in_range = j <= max_lane; break;
          default: j = min_lane | (bval & 31 & ~static_cast<int>(segmask)); in_range = j <= max_lane; break;
        }
        if (!in_range) j = lane;
        f->out = (j >= 0 && j < 32 && lanes[j] != nullptr) ? lanes[j]->in : poison(g.bytes);
        break;
      }
      case WarpOp::Matrix: break;  // complete_matrix below fills every lane's result
      case WarpOp::Ballot: f->out = ballot; break;
      case WarpOp::Any: f->out = ballot != 0 ? 1 : 0; break;
      case WarpOp::All: f->out = ballot == need ? 1 : 0; break;
      case WarpOp::MatchAny: {
        unsigned m = 0;
        for (unsigned k = 0; k < 32; ++k)
          if (lanes[k] != nullptr && lanes[k]->in == f->in) m |= 1u << k;
        f->out = m;
        break;
      }
      case WarpOp::MatchAll: {
        bool all = true;
        for (unsigned k = 0; k < 32; ++k)
          if (lanes[k] != nullptr && lanes[k]->in != f->in) all = false;
        f->out = all ? need : 0;
        f->out_pred = all ? 1 : 0;
        break;
      }
      default: {
        uint32_t acc = 0;
        bool first = true;
        for (unsigned k = 0; k < 32; ++k) {
          if (lanes[k] == nullptr) continue;
          const uint32_t v = static_cast<uint32_t>(lanes[k]->in);
          if (first) {
            acc = v;
            first = false;
            continue;
          }
          switch (g.op) {
            case WarpOp::ReduceAddU: acc += v; break;
            case WarpOp::ReduceMinU: acc = std::min(acc, v); break;
            case WarpOp::ReduceMaxU: acc = std::max(acc, v); break;
            case WarpOp::ReduceMinS: acc = static_cast<uint32_t>(std::min(static_cast<int32_t>(acc), static_cast<int32_t>(v))); break;
            case WarpOp::ReduceMaxS: acc = static_cast<uint32_t>(std::max(static_cast<int32_t>(acc), static_cast<int32_t>(v))); break;
            case WarpOp::ReduceAnd: acc &= v; break;
            case WarpOp::ReduceOr: acc |= v; break;
            case WarpOp::ReduceXor: acc ^= v; break;
            default: break;
          }
        }
        f->out = acc;
        break;
      }
    }
  }
  if (g.op == WarpOp::Matrix) complete_matrix(lanes, need);
  Executor& ex = Executor::get();
  for (unsigned l = 0; l < 32; ++l)
    if (lanes[l] != nullptr) ex.make_ready(lanes[l]);
}

std::string waiting_lanes(unsigned warp, const WarpGroup& g) { return lane_ranges(g.arrived) + format(" of warp %u", warp); }

}  // namespace

uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, unsigned bytes, int param, int width,
                         const char* file, int line, int* pred_out) {
  Fiber* f = current_fiber();
  Block& b = *f->block;
  WarpState& ws = b.warps[f->warp];
  const unsigned bit = 1u << f->lane;
  const Site s{file, line};
  if ((mask & bit) == 0)
    fiber_fault(f, cudaErrorLaunchFailure, "lane %u of warp %u calls %s with mask 0x%08x, which does not include the lane itself (at %s:%d)",
                f->lane, f->warp, op_name(op), mask, file != nullptr ? file : "?", line);
  if (is_shuffle(op) && (width < 1 || width > 32 || (width & (width - 1)) != 0))
    fiber_fault(f, cudaErrorLaunchFailure, "%s with width %d: the width must be a power of two from 1 to 32 (at %s:%d)",
                op_name(op), width, file != nullptr ? file : "?", line);
  size_t gi = ws.groups.size();
  for (size_t i = 0; i < ws.groups.size(); ++i)
    if (ws.groups[i].mask == mask) gi = i;
  if (gi < ws.groups.size()) {
    const WarpGroup& g = ws.groups[gi];
    if (g.op != op || g.bytes != bytes || (is_shuffle(op) && g.width != width)) {
      {
        set_fault(f, cudaErrorLaunchFailure,
                  format("lane %u calls %s(mask 0x%08x) at %s while lanes %s wait in %s with the same mask at %s: the "
                         "lanes of one collective must all execute the same operation (same kind, type and width)",
                         f->lane, op_name(op), mask, site_str(s).c_str(), waiting_lanes(f->warp, g).c_str(),
                         op_name(g.op), site_str(g.site).c_str()));
      }
      abandon_fiber(f);
    }
  } else {
    for (const WarpGroup& g : ws.groups) {
      if ((g.mask & mask) == 0) continue;
      {
        set_fault(f, cudaErrorLaunchFailure,
                  format("lane %u calls %s(mask 0x%08x) at %s while lanes %s wait in %s(mask 0x%08x) at %s: lanes that "
                         "sync with each other must pass the same mask",
                         f->lane, op_name(op), mask, site_str(s).c_str(), waiting_lanes(f->warp, g).c_str(),
                         op_name(g.op), g.mask, site_str(g.site).c_str()));
      }
      abandon_fiber(f);
    }
    ws.groups.push_back(WarpGroup{mask, 0, op, bytes, width, s});
    gi = ws.groups.size() - 1;
  }
  f->in = value;
  f->op_param = param;
  f->op = op;
  f->op_mask = mask;
  f->state = FState::WaitWarp;
  f->site = s;
  WarpGroup& g = ws.groups[gi];
  g.arrived |= bit;
  if (g.arrived == (mask & ws.existing)) {
    const WarpGroup done = g;
    ws.groups[gi] = ws.groups.back();
    ws.groups.pop_back();
    complete_group(b, f->warp, done);
  }
  suspend(f);
  if (pred_out != nullptr) *pred_out = f->out_pred;
  return f->out;
}

void warp_matrix(MatrixLane& lane, const char* file, int line) {
  warp_collective(WarpOp::Matrix, 0xFFFFFFFFu, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(&lane)), 8, 0, 32,
                  file, line, nullptr);
}

void cp_async(void* dst, const void* src, unsigned bytes, unsigned src_bytes, const char* file, int line) {
  Fiber* f = current_fiber();
  if (bytes != 4 && bytes != 8 && bytes != 16)
    fiber_fault(f, cudaErrorLaunchFailure, "cp.async of %u bytes: the size must be 4, 8 or 16 (at %s:%d)", bytes,
                file != nullptr ? file : "?", line);
  if (src_bytes > bytes)
    fiber_fault(f, cudaErrorLaunchFailure, "cp.async with a source size of %u bytes over the copy size %u (at %s:%d)",
                src_bytes, bytes, file != nullptr ? file : "?", line);
  if (!is_shared(dst) || (reinterpret_cast<uintptr_t>(dst) & (bytes - 1)) != 0 ||
      (src_bytes > 0 && (reinterpret_cast<uintptr_t>(src) & (bytes - 1)) != 0))
    fiber_fault(f, cudaErrorLaunchFailure,
                "cp.async of %u bytes from %p to %p: the destination must be shared memory and both addresses "
                "aligned to the copy size (at %s:%d)", bytes, src, dst, file != nullptr ? file : "?", line);
  f->copies.push_back(AsyncCopy{dst, src, bytes, src_bytes});
}

void cp_async_commit() {
  Fiber* f = current_fiber();
  f->copy_groups.push_back(f->copies.size());
}

void cp_async_wait(int pending_groups, const char* file, int line) {
  Fiber* f = current_fiber();
  if (pending_groups < 0) fiber_fault(f, cudaErrorLaunchFailure, "cp.async.wait_group %d (at %s:%d)", pending_groups, file != nullptr ? file : "?", line);
  const size_t groups = f->copy_groups.size();
  if (groups <= static_cast<size_t>(pending_groups)) return;
  // Complete the oldest groups, leaving the newest `pending_groups` in flight.
  const size_t done_groups = groups - static_cast<size_t>(pending_groups);
  const size_t done_copies = f->copy_groups[done_groups - 1];
  for (size_t i = 0; i < done_copies; ++i) {
    const AsyncCopy& c = f->copies[i];
    unsigned char* d = static_cast<unsigned char*>(c.dst);
    if (c.src_bytes > 0) std::memcpy(d, c.src, c.src_bytes);
    std::memset(d + c.src_bytes, 0, c.bytes - c.src_bytes);
  }
  f->copies.erase(f->copies.begin(), f->copies.begin() + static_cast<std::ptrdiff_t>(done_copies));
  f->copy_groups.erase(f->copy_groups.begin(), f->copy_groups.begin() + static_cast<std::ptrdiff_t>(done_groups));
  for (size_t& end : f->copy_groups) end -= done_copies;
}

unsigned active_mask() {
  Fiber* f = current_fiber();
  const Block& b = *f->block;
  unsigned m = 0;
  for (unsigned l = 0; l < 32; ++l) {
    const unsigned t = f->warp * 32 + l;
    if (t < b.nthreads && b.fibers[t]->state != FState::Done) m |= 1u << l;
  }
  return m;
}

void cluster_arrive(const char* file, int line) {
  Fiber* f = current_fiber();
  Run& r = *f->block->run;
  if (f->cluster_pending)
    fiber_fault(f, cudaErrorLaunchFailure, "cluster barrier arrive at %s:%d twice without a wait in between",
                file != nullptr ? file : "?", line);
  f->cluster_pending = true;
  f->cluster_phase = r.cb_phase;
  f->site = Site{file, line};
  if (++r.cb_arrived == r.cb_expected) {
    ++r.cb_phase;
    r.cb_arrived = 0;
    Executor& ex = Executor::get();
    for (unsigned k = 0; k < r.nblocks; ++k)
      for (Fiber* x : r.blocks[k]->fibers)
        if (x->state == FState::WaitCluster) ex.make_ready(x);
  }
}

void cluster_wait(const char* file, int line) {
  Fiber* f = current_fiber();
  Run& r = *f->block->run;
  if (!f->cluster_pending)
    fiber_fault(f, cudaErrorLaunchFailure, "cluster barrier wait at %s:%d without a preceding arrive",
                file != nullptr ? file : "?", line);
  if (r.cb_phase == f->cluster_phase) {
    f->state = FState::WaitCluster;
    f->site = Site{file, line};
    suspend(f);
  }
  f->cluster_pending = false;
}

unsigned cluster_block_rank() { return current_fiber()->block->rank; }
unsigned cluster_num_blocks() { return current_fiber()->block->run->nblocks; }
dim3 cluster_dims() { return current_fiber()->block->run->cluster_dim; }
dim3 cluster_index() { return current_fiber()->block->run->cluster_idx; }
dim3 cluster_grid_dims() { return current_fiber()->block->run->cluster_grid; }
dim3 cluster_block_index() {
  const Fiber* f = current_fiber();
  const dim3 c = f->block->run->cluster_dim;
  const unsigned r = f->block->rank;
  return dim3(r % c.x, (r / c.x) % c.y, r / (c.x * c.y));
}

namespace {
// Which block of the cluster owns shared-memory address p (static: the worker's TLS block; dynamic: the
// block's buffer), and at which offset.
bool locate_shared(const Run& r, const void* p, unsigned* rank, bool* is_static, size_t* offset) {
  const auto* a = static_cast<const unsigned char*>(p);
  for (unsigned k = 0; k < r.nblocks; ++k) {
    const Block& b = *r.blocks[k];
    if (b.worker->tls_base != nullptr && a >= b.worker->tls_base && a < b.worker->tls_base + b.worker->tls_size) {
      *rank = k;
      *is_static = true;
      *offset = static_cast<size_t>(a - b.worker->tls_base);
      return true;
    }
    if (a >= b.dyn && a <= b.dyn + b.dyn_bytes) {
      *rank = k;
      *is_static = false;
      *offset = static_cast<size_t>(a - b.dyn);
      return true;
    }
  }
  return false;
}
}  // namespace

void* cluster_map_shared(const void* ptr, unsigned rank, const char* file, int line) {
  Fiber* f = current_fiber();
  const Run& r = *f->block->run;
  if (rank >= r.nblocks)
    fiber_fault(f, cudaErrorIllegalAddress, "map_shared_rank(..., %u) at %s:%d, but the cluster has %u blocks", rank,
                file != nullptr ? file : "?", line, r.nblocks);
  unsigned owner = 0;
  bool is_static = false;
  size_t offset = 0;
  if (!locate_shared(r, ptr, &owner, &is_static, &offset))
    fiber_fault(f, cudaErrorIllegalAddress,
                "map_shared_rank at %s:%d on %p, which is not shared memory of a block of this cluster (are the "
                "kernels and the executor of cuda/simt/ linked into the same module?)",
                file != nullptr ? file : "?", line, ptr);
  const Block& target = *r.blocks[rank];
  return is_static ? static_cast<void*>(target.worker->tls_base + offset) : static_cast<void*>(target.dyn + offset);
}

unsigned cluster_query_shared_rank(const void* ptr, const char* file, int line) {
  Fiber* f = current_fiber();
  unsigned owner = 0;
  bool is_static = false;
  size_t offset = 0;
  if (!locate_shared(*f->block->run, ptr, &owner, &is_static, &offset))
    fiber_fault(f, cudaErrorIllegalAddress, "query_shared_rank at %s:%d on %p, which is not shared memory",
                file != nullptr ? file : "?", line, ptr);
  return owner;
}

void* dynamic_shared_base() { return current_fiber()->block->dyn; }

bool is_shared(const void* ptr) {
  Fiber* f = current_fiber();
  unsigned owner = 0;
  bool is_static = false;
  size_t offset = 0;
  return locate_shared(*f->block->run, ptr, &owner, &is_static, &offset);
}

void yield() {
  Fiber* f = current_fiber();
  Executor::get().make_ready(f);
  suspend(f);
}

long long clock_ns() {
  return static_cast<long long>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

void trap(const char* what, const char* file, int line, const char* func) {
  fiber_fault(current_fiber(), cudaErrorLaunchFailure, "%s at %s:%d in %s", what, file != nullptr ? file : "?", line,
              func != nullptr ? func : "?");
}

void device_assert_fail(const char* expr, const char* file, int line, const char* func) {
  if (!Executor::get().on_worker_thread()) {
    std::fprintf(stderr, "%s:%d: %s: Assertion `%s' failed.\n", file, line, func, expr);
    std::abort();
  }
  fiber_fault(current_fiber(), cudaErrorAssert, "assertion `%s' failed at %s:%d in %s", expr, file, line, func);
}

// ---- launch ----------------------------------------------------------------------------------------------------------------
namespace {

std::string launch_header(const LaunchRequest& req) {
  std::string s = "SIMT: kernel " + kernel_name(req.kernel, req.signature) + " [grid " + dim_str(req.grid) + ", block " +
                  dim_str(req.block);
  if (req.cluster_explicit) s += ", cluster " + dim_str(req.cluster);
  if (req.dynamic_smem != 0) s += format(", %zu B dynamic smem", req.dynamic_smem);
  s += "]";
  if (req.site.file != nullptr)
    s += format(" launched at %s (%s)", site_str(Site{req.site.file, req.site.line}).c_str(),
                req.site.function != nullptr ? req.site.function : "?");
  return s;
}

cudaError_t config_error(const LaunchRequest& req, cudaError_t code, const std::string& why) {
  return record_error(code, launch_header(req) + ": " + why);
}

cudaError_t validate(const LaunchRequest& req) {
  const dim3 g = req.grid, b = req.block, c = req.cluster;
  if (req.kernel == nullptr) return record_error(cudaErrorInvalidDeviceFunction, "SIMT: launch of a null kernel");
  if (b.x == 0 || b.y == 0 || b.z == 0 || g.x == 0 || g.y == 0 || g.z == 0)
    return config_error(req, cudaErrorInvalidConfiguration, "a grid or block dimension is 0");
  if (b.x > 1024 || b.y > 1024 || b.z > 64 || static_cast<uint64_t>(b.x) * b.y * b.z > 1024)
    return config_error(req, cudaErrorInvalidConfiguration, "more than 1024 threads per block (or block.z > 64)");
  if (g.x > 0x7FFFFFFFu || g.y > 65535 || g.z > 65535)
    return config_error(req, cudaErrorInvalidConfiguration, "grid.x > 2^31-1 or grid.y/grid.z > 65535");
  const FuncAttrs fa = func_attrs(req.kernel);
  const size_t limit = std::min(fa.max_dynamic_smem, optin_smem_limit());
  if (req.dynamic_smem > limit)
    return config_error(req, cudaErrorInvalidValue,
                        format("%zu bytes of dynamic shared memory exceed the kernel's limit of %zu (raise it with "
                               "cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes), up to "
                               "%zu)",
                               req.dynamic_smem, limit, optin_smem_limit()));
  if (c.x == 0 || c.y == 0 || c.z == 0 || g.x % c.x != 0 || g.y % c.y != 0 || g.z % c.z != 0)
    return config_error(req, cudaErrorInvalidClusterSize, "the grid is not a whole number of clusters");
  const unsigned n = c.x * c.y * c.z;
  if (n > kMaxCluster || (n > kMaxPortableCluster && !fa.nonportable_cluster))
    return config_error(req, cudaErrorInvalidClusterSize,
                        format("a cluster of %u blocks (at most %u, or %u with cudaFuncAttributeNonPortableClusterSizeAllowed)",
                               n, kMaxPortableCluster, kMaxCluster));
  if (!valid_stream(req.stream)) return config_error(req, cudaErrorInvalidResourceHandle, "invalid stream");
  return cudaSuccess;
}

}  // namespace

cudaError_t launch(const LaunchRequest& req) {
  Executor& ex = Executor::get();
  if (ex.on_worker_thread())
    fiber_fault(current_fiber(), cudaErrorNotSupported,
                "launches a kernel from inside a kernel (dynamic parallelism), which the SIMT executor does not support "
                "(launched at %s:%d)", req.site.file != nullptr ? req.site.file : "?", req.site.line);
  const cudaError_t bad = validate(req);
  if (bad != cudaSuccess) return bad;
  std::string fault;
  cudaError_t code = cudaSuccess;
  uint64_t launch_number = 0, base = 0;
  {
    std::lock_guard<std::mutex> lock(ex.device_mutex);
    launch_number = g_launch_count.fetch_add(1) + 1;
    base = g_base_seed.load();
    uint64_t s = base ^ (launch_number * 0x9E3779B97F4A7C15ull);
    const uint64_t seed = mix64(s);
    try {
      ex.execute(req, seed);
    } catch (const std::bad_alloc&) {
      return record_error(cudaErrorMemoryAllocation, launch_header(req) + ": out of memory for the executor's fibers");
    } catch (const std::system_error& e) {
      return record_error(cudaErrorInitializationError,
                          launch_header(req) + ": could not start the executor's worker threads: " + e.what());
    }
    const Run& r = ex.last_run();
    if (r.faulted) {
      code = r.fault_code;
      fault = r.fault_msg;
    } else {
      // A kernel that wrote past either end of a device allocation damaged its guard bytes.
      Memory& mem = memory();
      std::lock_guard<std::mutex> mlock(mem.m);
      for (auto& kv : mem.device) {
        const long long at = Memory::damaged_guard(kv.first, kv.second);
        if (at == 0) continue;
        code = cudaErrorIllegalAddress;
        fault = format("wrote outside the device allocation %p of %zu bytes (first damaged byte at offset %lld)",
                       reinterpret_cast<void*>(kv.first), kv.second.size, at > 0 ? at - 1 : at);
        Memory::write_guards(kv.first, kv.second);
        break;
      }
    }
  }
  if (code == cudaSuccess) return code;
  std::string msg = launch_header(req) + ": " + fault +
                    format("\n  replay: GRPO_SIMT_SEED=0x%016llx (launch #%llu of this process)",
                           static_cast<unsigned long long>(base), static_cast<unsigned long long>(launch_number));
  if (!g_quiet.load()) std::fprintf(stderr, "%s\n", msg.c_str());
  return record_error(code, std::move(msg));
}

}  // namespace detail

uint64_t seed() { return detail::g_base_seed.load(); }
void set_seed(uint64_t s) {
  detail::g_base_seed.store(s);
  detail::g_launch_count.store(0);
}
const char* last_error_detail() {
  return detail::t_is_worker == 0 && detail::t_last_detail ? detail::t_last_detail->c_str() : "";
}
const char* error_detail(cuda_api::cudaError_t code) {
  if (detail::t_is_worker == 0 && detail::t_last_detail && detail::t_last_detail_code == code)
    return detail::t_last_detail->c_str();
  return cuda_api::cudaGetErrorString(code);
}
void set_quiet(bool quiet) { detail::g_quiet.store(quiet); }
uint64_t blocks_executed() { return detail::g_blocks_executed.load(); }
void shutdown() {
  detail::Executor& ex = detail::Executor::get();
  std::lock_guard<std::mutex> lock(ex.device_mutex);
  ex.shutdown();
}

}  // namespace grpo_simt
