#include "dist/mpi_library.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <vector>

namespace grpo {
namespace dist {
namespace {

constexpr int kThreadSerialized = 2;  // MPI_THREAD_SERIALIZED: the same value in both ABIs

// Open MPI: every handle is the address of a predefined object exported by libmpi.
struct OpenMpiAbi {
  using Comm = void*;
  using Datatype = void*;
  using Op = void*;
  using Request = void*;
  using Errhandler = void*;
  static constexpr const char* name = "Open MPI";
  static void* inPlace() { return reinterpret_cast<void*>(1); }
  static void* statusIgnore() { return nullptr; }
};

// The MPICH ABI: handles are 32-bit integers with fixed values (mpi.h of MPICH 3.x and 4.x).
struct MpichAbi {
  using Comm = int;
  using Datatype = int;
  using Op = int;
  using Request = int;
  using Errhandler = int;
  static constexpr const char* name = "MPICH";
  static void* inPlace() { return reinterpret_cast<void*>(-1); }
  static void* statusIgnore() { return reinterpret_cast<void*>(1); }
};

template <typename Abi>
struct Handles {
  typename Abi::Comm world{};
  typename Abi::Datatype byte{}, f32{}, f64{};
  typename Abi::Op sum{}, max{}, min{};
  typename Abi::Errhandler errorsReturn{};
};

bool openMpiHandles(void* lib, Handles<OpenMpiAbi>* h) {
  struct Entry {
    const char* symbol;
    void** slot;
  } entries[] = {
      {"ompi_mpi_comm_world", &h->world}, {"ompi_mpi_byte", &h->byte},     {"ompi_mpi_float", &h->f32},
      {"ompi_mpi_double", &h->f64},       {"ompi_mpi_op_sum", &h->sum},    {"ompi_mpi_op_max", &h->max},
      {"ompi_mpi_op_min", &h->min},       {"ompi_mpi_errors_return", &h->errorsReturn},
  };
  for (const Entry& e : entries) {
    *e.slot = dlsym(lib, e.symbol);
    if (!*e.slot) return false;
  }
  return true;
}

Handles<MpichAbi> mpichHandles() {
  Handles<MpichAbi> h;
  h.world = 0x44000000;
  h.byte = 0x4c00010d;
  h.f32 = 0x4c00040a;
  h.f64 = 0x4c00080b;
  h.max = 0x58000001;
  h.min = 0x58000002;
  h.sum = 0x58000003;
  h.errorsReturn = 0x54000001;
  return h;
}

template <typename Abi>
class MpiBinding final : public MpiLibrary {
  using Comm = typename Abi::Comm;
  using Datatype = typename Abi::Datatype;
  using Op = typename Abi::Op;
  using Request = typename Abi::Request;
  static_assert(sizeof(Request) <= sizeof(MpiRequest::storage), "MPI_Request does not fit MpiRequest");

 public:
  MpiBinding(void* lib, std::string path, Handles<Abi> handles) : lib_(lib), path_(std::move(path)), abi_(Abi::name), h_(handles) {}

  // Binds every function; false (with the missing name) when one is absent.
  bool bind(std::string* missing) {
    return sym("MPI_Init_thread", &initThread_, missing) && sym("MPI_Initialized", &initialized_, missing) &&
           sym("MPI_Finalized", &finalized_, missing) && sym("MPI_Comm_set_errhandler", &setErrhandler_, missing) &&
           sym("MPI_Comm_rank", &commRank_, missing) && sym("MPI_Comm_size", &commSize_, missing) &&
           sym("MPI_Finalize", &finalize_, missing) && sym("MPI_Abort", &abort_, missing) &&
           sym("MPI_Error_string", &errorString_, missing) && sym("MPI_Get_library_version", &libraryVersion_, missing) &&
           sym("MPI_Iallreduce", &iallreduce_, missing) && sym("MPI_Ibcast", &ibcast_, missing) &&
           sym("MPI_Iallgather", &iallgather_, missing) && sym("MPI_Ireduce_scatter_block", &ireduceScatterBlock_, missing) &&
           sym("MPI_Ibarrier", &ibarrier_, missing) && sym("MPI_Test", &test_, missing);
  }

  const std::string& path() const override { return path_; }
  const std::string& abi() const override { return abi_; }

  std::string version() override {
    std::vector<char> text(8192 + 1, '\0');
    int length = 0;
    if (libraryVersion_(text.data(), &length) != 0) return "unknown";
    std::string s(text.data());
    const size_t eol = s.find_first_of("\r\n");
    if (eol != std::string::npos) s.resize(eol);
    while (!s.empty() && (s.back() == ' ' || s.back() == ',')) s.pop_back();
    return s;
  }

  int init() override {
    int provided = 0;
    int rc = initThread_(nullptr, nullptr, kThreadSerialized, &provided);
    if (rc != 0) return rc;
    return setErrhandler_(h_.world, h_.errorsReturn);
  }

  bool initialized() override {
    int flag = 0, done = 0;
    initialized_(&flag);
    finalized_(&done);
    return flag != 0 && done == 0;
  }

  int rank() override {
    int r = -1;
    commRank_(h_.world, &r);
    return r;
  }

  int size() override {
    int s = 0;
    commSize_(h_.world, &s);
    return s;
  }

  int finalize() override { return finalize_(); }
  void abort(int code) override { abort_(h_.world, code); }

  std::string errorString(int code) override {
    char text[1024 + 1] = {};
    int length = 0;
    if (errorString_(code, text, &length) != 0) return "MPI error " + std::to_string(code);
    return std::string(text) + " (MPI error " + std::to_string(code) + ")";
  }

  int iallreduce(const void* send, void* recv, int count, MpiType type, MpiOp op, MpiRequest* request) override {
    return iallreduce_(send ? send : Abi::inPlace(), recv, count, dtype(type), reduction(op), h_.world, req(request));
  }
  int ibcast(void* buffer, int count, MpiType type, int root, MpiRequest* request) override {
    return ibcast_(buffer, count, dtype(type), root, h_.world, req(request));
  }
  int iallgather(const void* send, int count, void* recv, MpiType type, MpiRequest* request) override {
    return iallgather_(send ? send : Abi::inPlace(), count, dtype(type), recv, count, dtype(type), h_.world, req(request));
  }
  int ireduceScatterBlock(const void* send, void* recv, int count, MpiType type, MpiOp op, MpiRequest* request) override {
    return ireduceScatterBlock_(send ? send : Abi::inPlace(), recv, count, dtype(type), reduction(op), h_.world, req(request));
  }
  int ibarrier(MpiRequest* request) override { return ibarrier_(h_.world, req(request)); }
  int test(MpiRequest* request, bool* done) override {
    int flag = 0;
    int rc = test_(req(request), &flag, Abi::statusIgnore());
    *done = flag != 0;
    return rc;
  }

 private:
  template <typename F>
  bool sym(const char* name, F* slot, std::string* missing) {
    *slot = reinterpret_cast<F>(dlsym(lib_, name));
    if (!*slot) *missing = name;
    return *slot != nullptr;
  }
  Datatype dtype(MpiType t) const { return t == MpiType::Byte ? h_.byte : t == MpiType::Float ? h_.f32 : h_.f64; }
  Op reduction(MpiOp op) const { return op == MpiOp::Sum ? h_.sum : op == MpiOp::Max ? h_.max : h_.min; }
  static Request* req(MpiRequest* r) { return reinterpret_cast<Request*>(r->storage); }

  void* lib_;
  std::string path_, abi_;
  Handles<Abi> h_;
  int (*initThread_)(int*, char***, int, int*) = nullptr;
  int (*initialized_)(int*) = nullptr;
  int (*finalized_)(int*) = nullptr;
  int (*setErrhandler_)(Comm, typename Abi::Errhandler) = nullptr;
  int (*commRank_)(Comm, int*) = nullptr;
  int (*commSize_)(Comm, int*) = nullptr;
  int (*finalize_)() = nullptr;
  int (*abort_)(Comm, int) = nullptr;
  int (*errorString_)(int, char*, int*) = nullptr;
  int (*libraryVersion_)(char*, int*) = nullptr;
  int (*iallreduce_)(const void*, void*, int, Datatype, Op, Comm, Request*) = nullptr;
  int (*ibcast_)(void*, int, Datatype, int, Comm, Request*) = nullptr;
  int (*iallgather_)(const void*, int, Datatype, void*, int, Datatype, Comm, Request*) = nullptr;
  int (*ireduceScatterBlock_)(const void*, void*, int, Datatype, Op, Comm, Request*) = nullptr;
  int (*ibarrier_)(Comm, Request*) = nullptr;
  int (*test_)(Request*, int*, void*) = nullptr;
};

std::string libraryPathOf(void* lib, const std::string& fallback) {
  // dladdr on a symbol of the library gives the file the dynamic loader actually picked.
  void* symbol = dlsym(lib, "MPI_Init_thread");
  Dl_info info{};
  if (symbol && dladdr(symbol, &info) && info.dli_fname) return info.dli_fname;
  return fallback;
}

}  // namespace

MpiLoad loadMpi() {
  MpiLoad result;
  std::vector<std::string> names;
  const char* forced = std::getenv("GRPO_MPI_LIBRARY");
  if (forced && *forced) {
    names.push_back(forced);
  } else {
    names = {"libmpi.so.40", "libmpi.so.12", "libmpi.so"};
  }
  std::string tried;
  for (const std::string& name : names) {
    dlerror();
    void* lib = dlopen(name.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
      const char* why = dlerror();
      tried += (tried.empty() ? "" : "; ") + name + ": " + (why ? why : "not found");
      continue;
    }
    const std::string path = libraryPathOf(lib, name);
    std::string missing;
    Handles<OpenMpiAbi> ompi;
    if (openMpiHandles(lib, &ompi)) {
      auto binding = std::make_unique<MpiBinding<OpenMpiAbi>>(lib, path, ompi);
      if (binding->bind(&missing)) {
        result.library = std::move(binding);
        return result;
      }
    } else if (dlsym(lib, "MPI_Init_thread") && !dlsym(lib, "ompi_mpi_comm_world")) {
      auto binding = std::make_unique<MpiBinding<MpichAbi>>(lib, path, mpichHandles());
      if (binding->bind(&missing)) {
        // A libmpi.so.12 that is not of the MPICH family would have other handle values: check its words.
        const std::string v = binding->version();
        if (v.find("MPICH") != std::string::npos || v.find("Intel") != std::string::npos ||
            v.find("MVAPICH") != std::string::npos || v.find("CRAY") != std::string::npos ||
            v.find("Cray") != std::string::npos) {
          result.library = std::move(binding);
          return result;
        }
        missing = "an MPICH-family library version (it says \"" + v + "\")";
      }
    } else {
      missing = "the Open MPI objects (ompi_mpi_comm_world...)";
    }
    tried += (tried.empty() ? "" : "; ") + path + ": lacks " + missing;
    // The handle stays open: Open MPI does not support being unloaded, and it is small.
  }
  result.reason = "no usable MPI library (" + tried + "). Install Open MPI or MPICH (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev), or set GRPO_MPI_LIBRARY to the libmpi.so to use";
  return result;
}

}  // namespace dist
}  // namespace grpo
