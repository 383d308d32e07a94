// Which GEMM the cuda backend uses and why (cuda/cublaslt.cu), in plain C++ for backend.info() (csrc/backend.cc).
#pragma once
#include <string>

namespace grpo::cuda {

struct GemmStatus {
  bool cublasLt = false;  // cuBLASLt is loaded and used
  std::string library;    // the file that was loaded
  std::string reason;     // why this GEMM
};
const GemmStatus& cudaGemmStatus();

}  // namespace grpo::cuda
