// The process's place in a data-parallel job and the collectives between its processes (ranks).
//
// - Launch and rendezvous: MPI (an mpirun/mpiexec/srun launch is detected from the launcher's environment; a
//   process started alone is a world of one and needs no MPI at all).
// - Collectives on cpu tensors: MPI's non-blocking collectives. On cuda tensors: NCCL, its unique id
//   broadcast over MPI (through host memory over MPI when NCCL is not installed).
// - One communication thread per process runs every collective in the order the caller submitted them, so two
//   ranks that submit the same sequence of collectives match them up even though the JavaScript side issues them
//   as overlapping Promises. It initializes and finalizes MPI too (MPI_THREAD_SERIALIZED is all it needs).
// - Nothing waits forever: each collective polls its request against a deadline (the timeout). A collective that
//   times out, or that MPI/NCCL reports failed, breaks the world: it and everything queued after it fail with
//   ERR_GRPO_DIST_TIMEOUT / ERR_GRPO_DIST, because a collective cannot be taken back once a peer may be in it.
#pragma once
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace grpo {
namespace dist {

enum class CollectiveKind { AllReduce, Broadcast, AllGather, ReduceScatter, Barrier, AllReduceValues, AllGatherBytes };
enum class ReduceOp { Sum, Max, Min };

const char* collectiveName(CollectiveKind kind);

// One collective, filled on the main thread (tensors checked by the binding), run on the communication thread.
struct CollectiveCall {
  CollectiveKind kind = CollectiveKind::Barrier;
  ReduceOp op = ReduceOp::Sum;
  // AllReduce, Broadcast: the tensors, in place (one dtype, one device). AllGather: {input}. ReduceScatter: the
  // input, as the concatenation of these tensors.
  std::vector<TensorRef> tensors;
  // AllGather: the output, as the concatenation of these tensors. ReduceScatter: {output}.
  std::vector<TensorRef> outputs;
  int root = 0;
  std::vector<double> values;                 // AllReduceValues: in and out
  std::vector<uint8_t> bytes;                 // AllGatherBytes: this rank's bytes
  std::vector<std::vector<uint8_t>> gathered; // AllGatherBytes: every rank's bytes, by rank
  uint64_t sequence = 0;                      // set when submitted: the n-th collective of this process
};

struct WorldInfo {
  bool initialized = false;
  int rank = 0, size = 1, localRank = 0, localSize = 1;
  std::string launcher;        // "none", "mpirun (Open MPI)", "mpiexec (MPICH/Hydra)", "srun (Slurm)", "PMIx"
  int launchedSize = 1;        // the world size the launcher's environment announces (before init)
  bool mpiLoaded = false;
  std::string mpiLibrary, mpiAbi, mpiVersion, mpiReason;
  bool ncclAvailable = false;
  int ncclVersion = 0;
  std::string ncclReason;
  std::string cudaTransport;   // "nccl", "host (MPI)" or "none"
  double timeoutSeconds = 600;
  bool broken = false;
  std::string brokenReason;
  uint64_t collectives = 0;
};

// What the launcher's environment says, before (and without) MPI: local rank and size, and the world size.
struct LaunchEnvironment {
  std::string launcher = "none";
  int size = 1, rank = 0, localRank = 0, localSize = 1;
};
LaunchEnvironment launchEnvironment();

// Info without initializing anything (loads the MPI library to report on it, once).
WorldInfo worldInfo();

// Joins the world: starts the communication thread; when the launcher announced more than one process,
// initializes MPI (ERR_GRPO_DIST_UNAVAILABLE without a usable MPI, ERR_GRPO_DIST_TIMEOUT past the timeout).
// Idempotent; timeoutSeconds > 0 replaces the collective timeout. Blocks the caller until done.
void initWorld(double timeoutSeconds, bool forceMpi);

// Queues a collective (in submission order) and returns at once; `done` runs on the communication thread with
// null or the error. initWorld must have been called.
void submit(std::shared_ptr<CollectiveCall> call, std::function<void(std::exception_ptr)> done);

// Submits and waits.
void runSync(std::shared_ptr<CollectiveCall> call);

// Ends the world at process exit: exitCode 0 finalizes MPI after the queued collectives; any other code (or a
// broken world) aborts the job through MPI_Abort with that code, so that the launcher stops the other ranks
// instead of letting them wait for this one. Safe to call more than once and without initWorld.
void shutdownWorld(int exitCode);

// Marks the world as abandoned (the process is being killed): shutdown will neither finalize nor abort.
void abandonWorld();

}  // namespace dist
}  // namespace grpo
