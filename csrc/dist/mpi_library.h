// MPI, loaded at run time (dlopen) rather than linked: the same binary loads on machines without MPI and says
// why distributed training is unavailable, and one build serves both MPI ABIs in use:
//   - Open MPI (libmpi.so.40, versions 3 to 5): handles are pointers to the library's predefined objects
//     (ompi_mpi_comm_world, ompi_mpi_float...), read with dlsym;
//   - the MPICH ABI (libmpi.so.12: MPICH, Intel MPI, MVAPICH, Cray MPICH): handles are fixed integers.
// Only the handful of calls the collectives need are bound, each through a small adapter per ABI, so the rest
// of csrc/dist/ never sees an MPI type. Every call here is made from one thread (the communicator's).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace grpo {
namespace dist {

enum class MpiType { Byte, Float, Double };
enum class MpiOp { Sum, Max, Min };

// An in-flight non-blocking operation; big enough for either ABI's MPI_Request (a pointer or an int).
struct MpiRequest {
  alignas(8) unsigned char storage[8] = {};
};

class MpiLibrary {
 public:
  virtual ~MpiLibrary() = default;

  // Where it came from and what it says it is (MPI_Get_library_version, first line).
  virtual const std::string& path() const = 0;
  virtual const std::string& abi() const = 0;  // "Open MPI" or "MPICH"
  virtual std::string version() = 0;

  // MPI_Init_thread at MPI_THREAD_SERIALIZED (calls come from one thread, not the one Node started on),
  // then MPI_ERRORS_RETURN on MPI_COMM_WORLD so that failures come back as codes instead of aborting.
  virtual int init() = 0;
  virtual bool initialized() = 0;
  virtual int rank() = 0;
  virtual int size() = 0;
  virtual int finalize() = 0;
  virtual void abort(int code) = 0;
  virtual std::string errorString(int code) = 0;

  // Non-blocking collectives over MPI_COMM_WORLD (counts are in elements of `type`). `send` null means in place.
  virtual int iallreduce(const void* send, void* recv, int count, MpiType type, MpiOp op, MpiRequest* request) = 0;
  virtual int ibcast(void* buffer, int count, MpiType type, int root, MpiRequest* request) = 0;
  virtual int iallgather(const void* send, int count, void* recv, MpiType type, MpiRequest* request) = 0;
  virtual int ireduceScatterBlock(const void* send, void* recv, int count, MpiType type, MpiOp op, MpiRequest* request) = 0;
  virtual int ibarrier(MpiRequest* request) = 0;
  // MPI_Test: *done is set once the request completed (it is then freed by MPI).
  virtual int test(MpiRequest* request, bool* done) = 0;
};

struct MpiLoad {
  std::unique_ptr<MpiLibrary> library;  // null when none could be loaded
  std::string reason;                   // why not (every name tried, with dlerror's words)
};

// Tries GRPO_MPI_LIBRARY (a path or file name) when set, else libmpi.so.40, libmpi.so.12, libmpi.so.
// The library is opened RTLD_GLOBAL: Open MPI's own plugins resolve symbols of libmpi at their load time.
MpiLoad loadMpi();

}  // namespace dist
}  // namespace grpo
