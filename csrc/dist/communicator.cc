// The communication thread and the collectives (see communicator.h for the design).
//
// Host tensors: one MPI non-blocking collective per call (packed into one staging buffer when the call names
// several tensors, and in chunks below MPI's int counts), polled with MPI_Test against the deadline. bf16 sums are
// widened to f32, summed by MPI and rounded once, so every rank rounds the same exact f32 sum.
// Cuda tensors: NCCL on a stream of our own (the CUDA backend synchronizes its stream before an op's Promise
// settles, so the data is ready when the collective is submitted), polled with cuStreamQuery and
// ncclCommGetAsyncError against the deadline; a timeout aborts the NCCL communicator. Without NCCL, cuda tensors
// travel through host memory over MPI.
#include "dist/communicator.h"

#include <sched.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

#include "core/errors.h"
#include "core/half.h"
#include "dist/mpi_library.h"
#include "dist/nccl_library.h"

namespace grpo {
namespace dist {

const char* collectiveName(CollectiveKind kind) {
  switch (kind) {
    case CollectiveKind::AllReduce: return "allReduce";
    case CollectiveKind::Broadcast: return "broadcast";
    case CollectiveKind::AllGather: return "allGather";
    case CollectiveKind::ReduceScatter: return "reduceScatter";
    case CollectiveKind::Barrier: return "barrier";
    case CollectiveKind::AllReduceValues: return "allReduceValues";
    case CollectiveKind::AllGatherBytes: return "allGatherBytes";
  }
  return "collective";
}

namespace {

using Clock = std::chrono::steady_clock;

// Counts above this go in several MPI calls (MPI counts are ints; 2^30 keeps byte offsets small too).
constexpr int64_t kMpiChunk = int64_t{1} << 30;

bool envInt(const char* name, int* out) {
  const char* v = std::getenv(name);
  if (!v || !*v) return false;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < 0 || x > INT_MAX) return false;
  *out = static_cast<int>(x);
  return true;
}

// SLURM_STEP_TASKS_PER_NODE reads like "2(x3),1": tasks on each node, in node order.
int slurmTasksOnNode(const char* spec, int node) {
  if (!spec) return -1;
  std::string s(spec);
  int index = 0;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t end = s.find(',', pos);
    if (end == std::string::npos) end = s.size();
    std::string item = s.substr(pos, end - pos);
    int tasks = std::atoi(item.c_str());
    int repeat = 1;
    size_t x = item.find("(x");
    if (x != std::string::npos) repeat = std::atoi(item.c_str() + x + 2);
    if (node < index + repeat) return tasks;
    index += repeat;
    pos = end + 1;
  }
  return -1;
}

std::string secondsText(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, s < 10 ? "%.3g s" : "%.0f s", s);
  return buf;
}

size_t bytesOf(const TensorRef& t) { return static_cast<size_t>(t.numel()) * dtypeSize(t.dtype); }

std::string describeCall(const CollectiveCall& c) {
  std::string what = std::string(collectiveName(c.kind)) + " #" + std::to_string(c.sequence);
  const std::vector<TensorRef>& ts = c.tensors;
  if (!ts.empty()) {
    int64_t n = 0;
    for (const TensorRef& t : ts) n += t.numel();
    what += " (" + std::to_string(ts.size()) + (ts.size() == 1 ? " tensor, " : " tensors, ") + std::to_string(n) + " " +
            dtypeName(ts[0].dtype) + " values on " + deviceName(ts[0].device()) + ")";
  }
  return what;
}

class World {
 public:
  static World& get() {
    static World* world = new World();  // never destroyed: the exit hooks may still use it
    return *world;
  }

  WorldInfo info() {
    std::lock_guard<std::mutex> lock(mu_);
    loadMpiOnce();
    WorldInfo i = info_;
    if (!initialized_) {
      const LaunchEnvironment env = launchEnvironment();
      i.launcher = env.launcher;
      i.launchedSize = env.size;
      i.rank = env.rank;
      i.localRank = env.localRank;
      i.localSize = env.localSize;
      i.size = 1;
    }
    i.initialized = initialized_;
    i.broken = broken_;
    i.brokenReason = brokenReason_;
    i.collectives = submitted_;
    const NcclLoad& nccl = loadNccl();
    i.ncclAvailable = nccl.ok;
    i.ncclVersion = nccl.version;
    i.ncclReason = nccl.ok ? "" : nccl.reason;
    i.cudaTransport = nccl.ok ? "nccl" : (i.size == 1 || mpi_) ? "host (MPI)" : "none";
    return i;
  }

  void init(double timeoutSeconds, bool forceMpi) {
    std::unique_lock<std::mutex> lock(mu_);
    if (timeoutSeconds > 0) info_.timeoutSeconds = timeoutSeconds;
    if (initialized_) return;
    const LaunchEnvironment env = launchEnvironment();
    info_.launcher = env.launcher;
    info_.launchedSize = env.size;
    const bool needMpi = env.size > 1 || forceMpi;
    if (needMpi) {
      loadMpiOnce();
      if (!mpi_) {
        throw Error(ErrorCode::DistUnavailable,
                    "Expected an MPI library for a job of " + std::to_string(env.size) + " processes (launcher: " + env.launcher +
                        ") but received none: " + info_.mpiReason);
      }
    }
    startThread();
    lock.unlock();
    if (!needMpi) {
      lock.lock();
      info_.rank = 0;
      info_.size = 1;
      info_.localRank = 0;
      info_.localSize = 1;
      initialized_ = true;
      return;
    }
    // MPI_Init_thread runs on the communication thread (the one that makes every later MPI call). It returns
    // when every rank has arrived, so it gets the timeout too.
    auto done = std::make_shared<std::promise<void>>();
    std::future<void> future = done->get_future();
    enqueue([this, done] {
      try {
        int rc = mpi_->initialized() ? 0 : mpi_->init();
        if (rc != 0) throw Error(ErrorCode::DistUnavailable, "Expected MPI_Init_thread to succeed but received " + mpi_->errorString(rc));
        mpiInitializedHere_ = true;
        done->set_value();
      } catch (...) {
        done->set_exception(std::current_exception());
      }
    });
    const double timeout = info_.timeoutSeconds;
    if (future.wait_for(std::chrono::duration<double>(timeout)) != std::future_status::ready) {
      throw Error(ErrorCode::DistTimeout, "Expected MPI to initialize within " + secondsText(timeout) + " (every rank of the " +
                                              std::to_string(env.size) + " announced by " + env.launcher +
                                              " must start) but received no answer");
    }
    future.get();
    lock.lock();
    info_.rank = mpi_->rank();
    info_.size = mpi_->size();
    if (env.size > 1 && info_.size != env.size) {
      // Each process initialized alone: the launcher started them without a way for MPI to find the others.
      throw Error(ErrorCode::DistUnavailable,
                  "Expected MPI to see the " + std::to_string(env.size) + " processes " + env.launcher + " started but received a world of " +
                      std::to_string(info_.size) + ": the launcher and the MPI library do not match (under Slurm, srun needs --mpi=pmix or --mpi=pmi2; "
                      "an mpirun of one MPI cannot start ranks of another)");
    }
    info_.localRank = env.localRank;
    info_.localSize = env.localSize;
    if (env.size <= 1) {
      // A forced MPI world (GRPO_DIST=mpi) without a launcher's local counts.
      info_.localRank = info_.rank;
      info_.localSize = info_.size;
    }
    initialized_ = true;
  }

  void submit(std::shared_ptr<CollectiveCall> call, std::function<void(std::exception_ptr)> done) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!initialized_) {
        throw Error(ErrorCode::InvalidArg, std::string("Expected distributed.init() before ") + collectiveName(call->kind) +
                                               " but received a collective on an uninitialized world");
      }
      if (shutdown_) {
        throw Error(ErrorCode::Dist, std::string("Expected a live world for ") + collectiveName(call->kind) +
                                         " but received one that was shut down (the process is exiting)");
      }
      call->sequence = ++submitted_;
    }
    enqueue([this, call, done] {
      std::exception_ptr error;
      try {
        execute(*call);
      } catch (...) {
        error = std::current_exception();
      }
      done(error);
    });
  }

  void shutdown(int exitCode) {
    std::unique_lock<std::mutex> lock(mu_);
    if (shutdown_ || !threadStarted_) {
      shutdown_ = true;
      return;
    }
    shutdown_ = true;
    exiting_ = true;  // a collective still waiting gives up at its next poll
    lock.unlock();
    auto done = std::make_shared<std::promise<void>>();
    std::future<void> future = done->get_future();
    enqueue([this, done, exitCode] {
      finishMpi(exitCode);
      done->set_value();
      stop_ = true;
    });
    // MPI_Finalize waits for the other ranks to finalize too; a rank that never does must not keep this one.
    double timeout;
    {
      std::lock_guard<std::mutex> relock(mu_);
      timeout = info_.timeoutSeconds;
    }
    if (future.wait_for(std::chrono::duration<double>(timeout)) != std::future_status::ready) {
      std::fprintf(stderr, "node-grpo: rank %d: MPI_Finalize did not return within %s (another rank has not finished); exiting without it\n",
                   info_.rank, secondsText(timeout).c_str());
      thread_.detach();
      return;
    }
    thread_.join();
  }

  void abandon() {
    std::lock_guard<std::mutex> lock(mu_);
    abandoned_ = true;
    exiting_ = true;
  }

 private:
  World() = default;

  void loadMpiOnce() {
    if (mpiTried_) return;
    mpiTried_ = true;
    MpiLoad load = loadMpi();
    if (load.library) {
      mpi_ = std::move(load.library);
      info_.mpiLoaded = true;
      info_.mpiLibrary = mpi_->path();
      info_.mpiAbi = mpi_->abi();
      info_.mpiVersion = mpi_->version();
    } else {
      info_.mpiReason = load.reason;
    }
  }

  void startThread() {
    if (threadStarted_) return;
    threadStarted_ = true;
    thread_ = std::thread([this] { loop(); });
    // Exit hook of last resort (lib/distributed.ts ends the world itself, with the exit code, on process 'exit').
    std::atexit([] { World::get().shutdown(0); });
  }

  void enqueue(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(queueMu_);
      queue_.push_back(std::move(task));
    }
    queueCv_.notify_one();
  }

  void loop() {
    while (!stop_) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(queueMu_);
        queueCv_.wait(lock, [this] { return !queue_.empty(); });
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();
    }
  }

  void finishMpi(int exitCode) {
    if (!mpiInitializedHere_ || abandoned_) return;
    if (nccl_.comm) {
      const NcclLoad& n = loadNccl();
      if (broken_ || exitCode != 0) n.nccl.commAbort(nccl_.comm);
      else n.nccl.commDestroy(nccl_.comm);
      nccl_.comm = nullptr;
    }
    if (exitCode != 0 || broken_) {
      // The other ranks may be waiting in a collective for this one: tell the launcher to stop them all.
      mpi_->abort(exitCode != 0 ? exitCode : 1);
      return;
    }
    mpi_->finalize();
  }

  // ---- execution (communication thread only) -------------------------------------------------------------

  struct Deadline {
    Clock::time_point start, end;
    double seconds;
  };

  [[noreturn]] void breakWorld(ErrorCode code, const std::string& message) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!broken_) {
        broken_ = true;
        brokenReason_ = message;
      }
    }
    throw Error(code, message);
  }

  void execute(CollectiveCall& c) {
    bool broken;
    std::string reason;
    double seconds;
    {
      std::lock_guard<std::mutex> lock(mu_);
      broken = broken_;
      reason = brokenReason_;
      seconds = info_.timeoutSeconds;
    }
    if (broken) {
      throw Error(ErrorCode::Dist, "Expected a working world for " + describeCall(c) + " but received one broken by an earlier collective: " + reason);
    }
    const Clock::time_point now = Clock::now();
    Deadline d{now, now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds)), seconds};
    const bool cuda = !c.tensors.empty() && c.tensors[0].device() == Device::Cuda;
    if (cuda && info_.size >= 1 && loadNccl().ok) {
      executeNccl(c, d);
      return;
    }
    executeHost(c, d, cuda);
  }

  // Polls an MPI request until it completes, the deadline passes or the process exits. Spins (yielding the core)
  // for the first 20 ms, when most collectives finish, then sleeps between polls, up to 100 us.
  void waitMpi(MpiRequest& request, const Deadline& d, const CollectiveCall& c) {
    long sleepNs = 2000;
    for (;;) {
      bool done = false;
      int rc = mpi_->test(&request, &done);
      if (rc != 0) breakWorld(ErrorCode::Dist, "Expected " + describeCall(c) + " to complete but MPI reported " + mpi_->errorString(rc));
      if (done) return;
      checkDeadline(d, c);
      const Clock::time_point now = Clock::now();
      if (now - d.start < std::chrono::milliseconds(20)) {
        sched_yield();
      } else {
        timespec ts{0, sleepNs};
        nanosleep(&ts, nullptr);
        sleepNs = std::min(sleepNs * 2, 100000L);
      }
    }
  }

  void checkDeadline(const Deadline& d, const CollectiveCall& c) {
    if (exiting_) {
      breakWorld(ErrorCode::Dist, "Expected " + describeCall(c) + " to complete but the process is exiting while it waits");
    }
    if (Clock::now() > d.end) {
      breakWorld(ErrorCode::DistTimeout, "Expected every rank to join " + describeCall(c) + " within " + secondsText(d.seconds) +
                                             " (rank " + std::to_string(info_.rank) + " of " + std::to_string(info_.size) +
                                             ") but received no completion: a rank exited, stalls, or called a different collective");
    }
  }

  void mpiCall(int rc, const CollectiveCall& c) {
    if (rc != 0) breakWorld(ErrorCode::Dist, "Expected MPI to start " + describeCall(c) + " but it reported " + mpi_->errorString(rc));
  }

  // In-place all-reduce of `n` values of `type` at `data`, in chunks.
  void allReduceBuffer(void* data, int64_t n, MpiType type, MpiOp op, const Deadline& d, const CollectiveCall& c) {
    const size_t elem = type == MpiType::Double ? 8 : type == MpiType::Float ? 4 : 1;
    for (int64_t off = 0; off < n; off += kMpiChunk) {
      const int count = static_cast<int>(std::min(kMpiChunk, n - off));
      MpiRequest r;
      mpiCall(mpi_->iallreduce(nullptr, static_cast<char*>(data) + off * elem, count, type, op, &r), c);
      waitMpi(r, d, c);
    }
  }

  void broadcastBuffer(void* data, int64_t bytes, int root, const Deadline& d, const CollectiveCall& c) {
    for (int64_t off = 0; off < bytes; off += kMpiChunk) {
      const int count = static_cast<int>(std::min(kMpiChunk, bytes - off));
      MpiRequest r;
      mpiCall(mpi_->ibcast(static_cast<char*>(data) + off, count, MpiType::Byte, root, &r), c);
      waitMpi(r, d, c);
    }
  }

  static MpiOp mpiOp(ReduceOp op) { return op == ReduceOp::Sum ? MpiOp::Sum : op == ReduceOp::Max ? MpiOp::Max : MpiOp::Min; }

  // Copies the concatenation of `ts` into `dst` (raw bytes), reading device tensors through the host.
  static void packBytes(const std::vector<TensorRef>& ts, unsigned char* dst) {
    for (const TensorRef& t : ts) {
      const size_t b = bytesOf(t);
      if (t.device() == Device::Cpu) std::memcpy(dst, t.storage->data(), b);
      else copyToHost(t, dst, b);
      dst += b;
    }
  }
  static void unpackBytes(const unsigned char* src, const std::vector<TensorRef>& ts) {
    for (const TensorRef& t : ts) {
      const size_t b = bytesOf(t);
      if (t.device() == Device::Cpu) std::memcpy(t.storage->data(), src, b);
      else copyFromHost(t, src, b);
      src += b;
    }
  }
  // f32 values of the concatenation (bf16 widened), and back (bf16 rounded to nearest even).
  void packF32(const std::vector<TensorRef>& ts, float* dst) {
    for (const TensorRef& t : ts) {
      const int64_t n = t.numel();
      if (t.dtype == DType::F32) {
        packBytes({t}, reinterpret_cast<unsigned char*>(dst));
      } else {
        scratch16_.resize(static_cast<size_t>(n));
        packBytes({t}, reinterpret_cast<unsigned char*>(scratch16_.data()));
        for (int64_t i = 0; i < n; i++) dst[i] = bf16ToFloat(scratch16_[i]);
      }
      dst += n;
    }
  }
  void unpackF32(const float* src, const std::vector<TensorRef>& ts) {
    for (const TensorRef& t : ts) {
      const int64_t n = t.numel();
      if (t.dtype == DType::F32) {
        unpackBytes(reinterpret_cast<const unsigned char*>(src), {t});
      } else {
        scratch16_.resize(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; i++) scratch16_[i] = floatToBf16(src[i]);
        unpackBytes(reinterpret_cast<const unsigned char*>(scratch16_.data()), {t});
      }
      src += n;
    }
  }

  static int64_t totalNumel(const std::vector<TensorRef>& ts) {
    int64_t n = 0;
    for (const TensorRef& t : ts) n += t.numel();
    return n;
  }
  static int64_t totalBytes(const std::vector<TensorRef>& ts) {
    int64_t n = 0;
    for (const TensorRef& t : ts) n += static_cast<int64_t>(bytesOf(t));
    return n;
  }

  void executeHost(CollectiveCall& c, const Deadline& d, bool cuda) {
    const int W = info_.size;
    const bool single = W == 1;
    switch (c.kind) {
      case CollectiveKind::AllReduce: {
        if (single) return;
        const bool direct = !cuda && c.tensors.size() == 1 && c.tensors[0].dtype == DType::F32;
        if (direct) {
          allReduceBuffer(c.tensors[0].storage->data(), c.tensors[0].numel(), MpiType::Float, mpiOp(c.op), d, c);
          return;
        }
        const int64_t n = totalNumel(c.tensors);
        stagingF32_.resize(static_cast<size_t>(n));
        packF32(c.tensors, stagingF32_.data());
        allReduceBuffer(stagingF32_.data(), n, MpiType::Float, mpiOp(c.op), d, c);
        unpackF32(stagingF32_.data(), c.tensors);
        return;
      }
      case CollectiveKind::Broadcast: {
        if (single) return;
        if (!cuda && c.tensors.size() == 1) {
          broadcastBuffer(c.tensors[0].storage->data(), static_cast<int64_t>(bytesOf(c.tensors[0])), c.root, d, c);
          return;
        }
        const int64_t bytes = totalBytes(c.tensors);
        staging_.resize(static_cast<size_t>(bytes));
        if (info_.rank == c.root) packBytes(c.tensors, staging_.data());
        broadcastBuffer(staging_.data(), bytes, c.root, d, c);
        if (info_.rank != c.root) unpackBytes(staging_.data(), c.tensors);
        return;
      }
      case CollectiveKind::AllGather: {
        const TensorRef& in = c.tensors[0];
        const int64_t bytes = static_cast<int64_t>(bytesOf(in));
        staging_.resize(static_cast<size_t>(bytes) * static_cast<size_t>(W));
        if (single) {
          packBytes({in}, staging_.data());
          unpackBytes(staging_.data(), c.outputs);
          return;
        }
        if (bytes > INT_MAX) {
          fail(ErrorCode::Shape, "at most 2147483647 bytes per rank", "allGather over MPI", std::to_string(bytes) + " bytes");
        }
        const bool direct = !cuda && c.outputs.size() == 1 && c.outputs[0].device() == Device::Cpu;
        std::vector<unsigned char> send;
        const void* sendPtr = in.storage->data();
        if (cuda) {
          send.resize(static_cast<size_t>(bytes));
          packBytes({in}, send.data());
          sendPtr = send.data();
        }
        void* recv = direct ? c.outputs[0].storage->data() : staging_.data();
        MpiRequest r;
        mpiCall(mpi_->iallgather(sendPtr, static_cast<int>(bytes), recv, MpiType::Byte, &r), c);
        waitMpi(r, d, c);
        if (!direct) unpackBytes(staging_.data(), c.outputs);
        return;
      }
      case CollectiveKind::ReduceScatter: {
        const TensorRef& out = c.outputs[0];
        const int64_t n = out.numel();
        stagingF32_.resize(static_cast<size_t>(n) * static_cast<size_t>(W));
        packF32(c.tensors, stagingF32_.data());
        if (single) {
          unpackF32(stagingF32_.data(), {out});
          return;
        }
        if (n > INT_MAX) fail(ErrorCode::Shape, "at most 2147483647 elements per rank", "reduceScatter over MPI", std::to_string(n));
        resultF32_.resize(static_cast<size_t>(n));
        MpiRequest r;
        mpiCall(mpi_->ireduceScatterBlock(stagingF32_.data(), resultF32_.data(), static_cast<int>(n), MpiType::Float, mpiOp(c.op), &r), c);
        waitMpi(r, d, c);
        unpackF32(resultF32_.data(), {out});
        return;
      }
      case CollectiveKind::Barrier: {
        if (single) return;
        MpiRequest r;
        mpiCall(mpi_->ibarrier(&r), c);
        waitMpi(r, d, c);
        return;
      }
      case CollectiveKind::AllReduceValues: {
        if (single || c.values.empty()) return;
        allReduceBuffer(c.values.data(), static_cast<int64_t>(c.values.size()), MpiType::Double, mpiOp(c.op), d, c);
        return;
      }
      case CollectiveKind::AllGatherBytes: {
        c.gathered.assign(static_cast<size_t>(W), {});
        if (single) {
          c.gathered[0] = c.bytes;
          return;
        }
        // Lengths first, then every rank's bytes padded to the longest.
        std::vector<int64_t> lengths(static_cast<size_t>(W));
        const int64_t mine = static_cast<int64_t>(c.bytes.size());
        MpiRequest r1;
        mpiCall(mpi_->iallgather(&mine, 8, lengths.data(), MpiType::Byte, &r1), c);
        waitMpi(r1, d, c);
        const int64_t longest = std::max<int64_t>(1, *std::max_element(lengths.begin(), lengths.end()));
        if (longest > INT_MAX) fail(ErrorCode::Shape, "at most 2147483647 bytes per rank", "allGatherBytes", std::to_string(longest));
        std::vector<uint8_t> send(static_cast<size_t>(longest), 0);
        std::copy(c.bytes.begin(), c.bytes.end(), send.begin());
        std::vector<uint8_t> all(static_cast<size_t>(longest) * static_cast<size_t>(W));
        MpiRequest r2;
        mpiCall(mpi_->iallgather(send.data(), static_cast<int>(longest), all.data(), MpiType::Byte, &r2), c);
        waitMpi(r2, d, c);
        for (int k = 0; k < W; k++) {
          const uint8_t* from = all.data() + static_cast<size_t>(k) * static_cast<size_t>(longest);
          c.gathered[static_cast<size_t>(k)].assign(from, from + lengths[static_cast<size_t>(k)]);
        }
        return;
      }
    }
  }

  // ---- NCCL (cuda tensors) -----------------------------------------------------------------------------------

  struct NcclState {
    NcclComm comm = nullptr;
    CudaStream stream = nullptr;
    CudaDevicePtr staging = 0;
    size_t stagingBytes = 0;
  };

  std::string cudaError(int rc) {
    const char* s = nullptr;
    loadNccl().cuda.getErrorString(rc, &s);
    return std::string(s ? s : "unknown CUDA error") + " (CUresult " + std::to_string(rc) + ")";
  }

  void cudaCall(int rc, const char* what) {
    if (rc != kCudaSuccess) breakWorld(ErrorCode::Dist, std::string("Expected ") + what + " to succeed but received " + cudaError(rc));
  }

  void ncclCall(int rc, const char* what, const CollectiveCall& c) {
    if (rc != kNcclSuccess && rc != kNcclInProgress) {
      breakWorld(ErrorCode::Dist, "Expected NCCL to start " + describeCall(c) + " (" + what + ") but received " + loadNccl().nccl.getErrorString(rc));
    }
  }

  void ensureNccl(const Deadline& d, const CollectiveCall& c) {
    if (nccl_.comm) return;
    const NcclLoad& n = loadNccl();
    const CudaDriverApi& cu = n.cuda;
    cudaCall(cu.init(0), "cuInit");
    int device = 0;
    cudaCall(cu.deviceGet(&device, 0), "cuDeviceGet(0)");
    CudaContext ctx = nullptr;
    cudaCall(cu.primaryCtxRetain(&ctx, device), "cuDevicePrimaryCtxRetain");
    cudaCall(cu.ctxSetCurrent(ctx), "cuCtxSetCurrent");
    cudaCall(cu.streamCreate(&nccl_.stream, 1 /* CU_STREAM_NON_BLOCKING */), "cuStreamCreate");
    NcclUniqueId id{};
    if (info_.rank == 0) ncclCall(n.nccl.getUniqueId(&id), "ncclGetUniqueId", c);
    if (info_.size > 1) broadcastBuffer(&id, sizeof id, 0, d, c);
    NcclComm comm = nullptr;
    ncclCall(n.nccl.commInitRank(&comm, info_.size, id, info_.rank), "ncclCommInitRank", c);
    nccl_.comm = comm;
  }

  void ensureDeviceStaging(size_t bytes) {
    if (nccl_.stagingBytes >= bytes) return;
    const CudaDriverApi& cu = loadNccl().cuda;
    if (nccl_.staging) {
      cu.streamSynchronize(nccl_.stream);
      cu.memFree(nccl_.staging);
      nccl_.staging = 0;
      nccl_.stagingBytes = 0;
    }
    cudaCall(cu.memAlloc(&nccl_.staging, bytes), "cuMemAlloc (collective staging)");
    nccl_.stagingBytes = bytes;
  }

  static CudaDevicePtr devicePtr(const TensorRef& t) { return reinterpret_cast<CudaDevicePtr>(t.storage->data()); }

  static int ncclType(DType t) {
    switch (t) {
      case DType::F32: return kNcclFloat32;
      case DType::BF16: return kNcclBfloat16;
      case DType::F16: return kNcclFloat16;
      case DType::I32: return kNcclInt32;
      case DType::U8: return kNcclUint8;
    }
    return kNcclUint8;
  }
  static int ncclOp(ReduceOp op) { return op == ReduceOp::Sum ? kNcclSum : op == ReduceOp::Max ? kNcclMax : kNcclMin; }

  void waitStream(const Deadline& d, const CollectiveCall& c) {
    const NcclLoad& n = loadNccl();
    long sleepNs = 2000;
    for (;;) {
      int rc = n.cuda.streamQuery(nccl_.stream);
      if (rc == kCudaSuccess) return;
      if (rc != kCudaErrorNotReady) breakWorld(ErrorCode::Dist, "Expected " + describeCall(c) + " to complete on the GPU but received " + cudaError(rc));
      int async = kNcclSuccess;
      n.nccl.commGetAsyncError(nccl_.comm, &async);
      if (async != kNcclSuccess && async != kNcclInProgress) {
        n.nccl.commAbort(nccl_.comm);
        nccl_.comm = nullptr;
        breakWorld(ErrorCode::Dist, "Expected " + describeCall(c) + " to complete but NCCL reported " + n.nccl.getErrorString(async));
      }
      if (exiting_ || Clock::now() > d.end) {
        // The kernels of a collective whose peer is gone never finish on their own: abort the communicator.
        n.nccl.commAbort(nccl_.comm);
        nccl_.comm = nullptr;
        checkDeadline(d, c);
      }
      if (Clock::now() - d.start < std::chrono::milliseconds(20)) {
        sched_yield();
      } else {
        timespec ts{0, sleepNs};
        nanosleep(&ts, nullptr);
        sleepNs = std::min(sleepNs * 2, 100000L);
      }
    }
  }

  void executeNccl(CollectiveCall& c, const Deadline& d) {
    const NcclLoad& n = loadNccl();
    const NcclApi& api = n.nccl;
    ensureNccl(d, c);
    const int W = info_.size;
    switch (c.kind) {
      case CollectiveKind::AllReduce:
      case CollectiveKind::Broadcast: {
        ncclCall(api.groupStart(), "ncclGroupStart", c);
        for (const TensorRef& t : c.tensors) {
          void* p = t.storage->data();
          const size_t count = static_cast<size_t>(t.numel());
          if (c.kind == CollectiveKind::AllReduce) ncclCall(api.allReduce(p, p, count, ncclType(t.dtype), ncclOp(c.op), nccl_.comm, nccl_.stream), "ncclAllReduce", c);
          else ncclCall(api.broadcast(p, p, count, ncclType(t.dtype), c.root, nccl_.comm, nccl_.stream), "ncclBroadcast", c);
        }
        ncclCall(api.groupEnd(), "ncclGroupEnd", c);
        waitStream(d, c);
        return;
      }
      case CollectiveKind::AllGather: {
        const TensorRef& in = c.tensors[0];
        const size_t count = static_cast<size_t>(in.numel());
        if (c.outputs.size() == 1) {
          ncclCall(api.allGather(in.storage->data(), c.outputs[0].storage->data(), count, ncclType(in.dtype), nccl_.comm, nccl_.stream), "ncclAllGather", c);
          waitStream(d, c);
          return;
        }
        const size_t bytes = bytesOf(in) * static_cast<size_t>(W);
        ensureDeviceStaging(bytes);
        ncclCall(api.allGather(in.storage->data(), reinterpret_cast<void*>(nccl_.staging), count, ncclType(in.dtype), nccl_.comm, nccl_.stream), "ncclAllGather", c);
        size_t off = 0;
        for (const TensorRef& t : c.outputs) {
          cudaCall(n.cuda.memcpyDtoDAsync(devicePtr(t), nccl_.staging + off, bytesOf(t), nccl_.stream), "cuMemcpyDtoDAsync");
          off += bytesOf(t);
        }
        waitStream(d, c);
        return;
      }
      case CollectiveKind::ReduceScatter: {
        const TensorRef& out = c.outputs[0];
        const size_t count = static_cast<size_t>(out.numel());
        const void* send = c.tensors[0].storage->data();
        if (c.tensors.size() > 1) {
          ensureDeviceStaging(static_cast<size_t>(totalBytes(c.tensors)));
          size_t off = 0;
          for (const TensorRef& t : c.tensors) {
            cudaCall(n.cuda.memcpyDtoDAsync(nccl_.staging + off, devicePtr(t), bytesOf(t), nccl_.stream), "cuMemcpyDtoDAsync");
            off += bytesOf(t);
          }
          send = reinterpret_cast<void*>(nccl_.staging);
        }
        ncclCall(api.reduceScatter(send, out.storage->data(), count, ncclType(out.dtype), ncclOp(c.op), nccl_.comm, nccl_.stream), "ncclReduceScatter", c);
        waitStream(d, c);
        return;
      }
      default:
        executeHost(c, d, true);
        return;
    }
  }

  // Guarded by mu_.
  std::mutex mu_;
  WorldInfo info_;
  bool initialized_ = false, threadStarted_ = false, shutdown_ = false, mpiTried_ = false;
  bool broken_ = false, abandoned_ = false;
  std::string brokenReason_;
  uint64_t submitted_ = 0;
  std::unique_ptr<MpiLibrary> mpi_;

  // The queue of the communication thread.
  std::mutex queueMu_;
  std::condition_variable queueCv_;
  std::deque<std::function<void()>> queue_;
  std::thread thread_;
  std::atomic<bool> stop_{false}, exiting_{false};

  // Communication thread only.
  bool mpiInitializedHere_ = false;
  std::vector<unsigned char> staging_;
  std::vector<float> stagingF32_, resultF32_;
  std::vector<uint16_t> scratch16_;
  NcclState nccl_;
};

}  // namespace

LaunchEnvironment launchEnvironment() {
  LaunchEnvironment e;
  int size = 0, rank = 0, localRank = 0, localSize = 0;
  if (envInt("OMPI_COMM_WORLD_SIZE", &size)) {
    e.launcher = "mpirun (Open MPI)";
    envInt("OMPI_COMM_WORLD_RANK", &rank);
    if (!envInt("OMPI_COMM_WORLD_LOCAL_RANK", &localRank)) localRank = rank;
    if (!envInt("OMPI_COMM_WORLD_LOCAL_SIZE", &localSize)) localSize = size;
  } else if (envInt("PMI_SIZE", &size)) {
    e.launcher = "mpiexec (MPICH/Hydra)";
    envInt("PMI_RANK", &rank);
    if (!envInt("MPI_LOCALRANKID", &localRank)) localRank = rank;
    if (!envInt("MPI_LOCALNRANKS", &localSize)) localSize = size;
  } else if (envInt("SLURM_STEP_NUM_TASKS", &size)) {
    // srun (with --mpi=pmix or pmi2 so that MPI can find its peers).
    e.launcher = "srun (Slurm)";
    envInt("SLURM_PROCID", &rank);
    if (!envInt("SLURM_LOCALID", &localRank)) localRank = 0;
    int node = 0;
    envInt("SLURM_NODEID", &node);
    localSize = slurmTasksOnNode(std::getenv("SLURM_STEP_TASKS_PER_NODE"), node);
    if (localSize <= 0) localSize = 1;
  } else {
    return e;
  }
  e.size = std::max(1, size);
  e.rank = rank;
  e.localRank = localRank;
  e.localSize = std::max(1, localSize);
  return e;
}

WorldInfo worldInfo() { return World::get().info(); }

void initWorld(double timeoutSeconds, bool forceMpi) { World::get().init(timeoutSeconds, forceMpi); }

void submit(std::shared_ptr<CollectiveCall> call, std::function<void(std::exception_ptr)> done) {
  World::get().submit(std::move(call), std::move(done));
}

void runSync(std::shared_ptr<CollectiveCall> call) {
  auto result = std::make_shared<std::promise<void>>();
  std::future<void> future = result->get_future();
  submit(std::move(call), [result](std::exception_ptr error) {
    if (error) result->set_exception(error);
    else result->set_value();
  });
  future.get();
}

void shutdownWorld(int exitCode) { World::get().shutdown(exitCode); }

void abandonWorld() { World::get().abandon(); }

}  // namespace dist
}  // namespace grpo
