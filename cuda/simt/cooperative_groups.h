// The cooperative_groups subset the kernels use, for the host build (SIMT executor): the thread block,
// warp tiles (thread_block_tile<N>, N a power of two up to 32) with their shuffles and votes, tile
// reductions (cg::reduce with cg::plus/less/greater/bit_*), and Hopper thread-block clusters
// (this_cluster(): sync, split arrive/wait, map_shared_rank for distributed shared memory).
// Included by simt.h; the namespace is grpo_simt::cooperative_groups, aliased as ::cooperative_groups.
#pragma once

namespace grpo_simt {
namespace cooperative_groups {

using cuda_api::dim3;

namespace detail {
inline unsigned linear_thread_rank() {
  const auto* c = ::grpo_simt::detail::self();
  return c->thread_idx.x + c->block_dim.x * (c->thread_idx.y + c->block_dim.y * c->thread_idx.z);
}
inline unsigned block_threads() {
  const auto* c = ::grpo_simt::detail::self();
  return c->block_dim.x * c->block_dim.y * c->block_dim.z;
}
}  // namespace detail

class thread_block {
 public:
  struct arrival_token {};
  static void sync(const char* file = __builtin_FILE(), int line = __builtin_LINE()) { cuda_api::__syncthreads(file, line); }
  static unsigned thread_rank() { return detail::linear_thread_rank(); }
  static unsigned num_threads() { return detail::block_threads(); }
  static unsigned size() { return detail::block_threads(); }
  static dim3 group_index() { return ::grpo_simt::detail::self()->block_idx; }
  static dim3 thread_index() { return ::grpo_simt::detail::self()->thread_idx; }
  static dim3 dim_threads() { return ::grpo_simt::detail::self()->block_dim; }
  static dim3 group_dim() { return ::grpo_simt::detail::self()->block_dim; }
};

inline thread_block this_thread_block() { return thread_block(); }

// A tile of N consecutive threads (by linear rank) of a warp. Its collectives name exactly the tile's
// lanes in their mask, as CUDA's do, so the executor checks that all of them take part. As in CUDA,
// thread_block_tile<N, Parent> converts to thread_block_tile<N>.
template <unsigned N, typename Parent = void>
class thread_block_tile;

template <unsigned N>
class thread_block_tile<N, void> {
  static_assert(N >= 1 && N <= 32 && (N & (N - 1)) == 0, "tile size must be a power of two up to 32");

 public:
  static constexpr unsigned num_threads() { return N; }
  static constexpr unsigned size() { return N; }
  static unsigned thread_rank() { return detail::linear_thread_rank() & (N - 1); }
  static unsigned meta_group_rank() { return detail::linear_thread_rank() / N; }
  static unsigned meta_group_size() { return (detail::block_threads() + N - 1) / N; }
  static constexpr unsigned kTileBits = N == 32 ? 0xFFFFFFFFu : (1u << (N % 32)) - 1u;
  static unsigned lane_mask() {
    const unsigned base = (detail::linear_thread_rank() & 31u) & ~(N - 1);
    return kTileBits << base;
  }
  static void sync(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    cuda_api::__syncwarp(lane_mask(), file, line);
  }
  template <typename T>
  static T shfl(T var, int src, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return cuda_api::__shfl_sync(lane_mask(), var, src, static_cast<int>(N), file, line);
  }
  template <typename T>
  static T shfl_down(T var, unsigned delta, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return cuda_api::__shfl_down_sync(lane_mask(), var, delta, static_cast<int>(N), file, line);
  }
  template <typename T>
  static T shfl_up(T var, unsigned delta, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return cuda_api::__shfl_up_sync(lane_mask(), var, delta, static_cast<int>(N), file, line);
  }
  template <typename T>
  static T shfl_xor(T var, unsigned lane_xor, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return cuda_api::__shfl_xor_sync(lane_mask(), var, static_cast<int>(lane_xor), static_cast<int>(N), file, line);
  }
  static int any(int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return cuda_api::__any_sync(lane_mask(), pred, file, line);
  }
  static int all(int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return cuda_api::__all_sync(lane_mask(), pred, file, line);
  }
  // Bit i is the tile's thread of rank i, as in CUDA.
  static unsigned ballot(int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    const unsigned base = (detail::linear_thread_rank() & 31u) & ~(N - 1);
    const unsigned b = cuda_api::__ballot_sync(lane_mask(), pred, file, line);
    return (b >> base) & kTileBits;
  }
};

template <unsigned N, typename Parent>
class thread_block_tile : public thread_block_tile<N, void> {};

template <unsigned N, typename Parent>
inline thread_block_tile<N, Parent> tiled_partition(const Parent&) {
  return thread_block_tile<N, Parent>();
}

template <typename Group>
inline void sync(const Group& g) {
  g.sync();
}

template <typename T>
struct plus {
  T operator()(const T& a, const T& b) const { return a + b; }
};
template <typename T>
struct less {  // cg::reduce with less<T> yields the minimum
  T operator()(const T& a, const T& b) const { return b < a ? b : a; }
};
template <typename T>
struct greater {  // and with greater<T> the maximum
  T operator()(const T& a, const T& b) const { return a < b ? b : a; }
};
template <typename T>
struct bit_and {
  T operator()(const T& a, const T& b) const { return a & b; }
};
template <typename T>
struct bit_or {
  T operator()(const T& a, const T& b) const { return a | b; }
};
template <typename T>
struct bit_xor {
  T operator()(const T& a, const T& b) const { return a ^ b; }
};

// Butterfly reduction: every thread of the tile ends with the result, as with CUDA's cg::reduce.
template <unsigned N, typename Parent, typename T, typename Op>
inline T reduce(const thread_block_tile<N, Parent>& g, T value, Op op) {
  for (unsigned offset = N / 2; offset > 0; offset /= 2) value = op(value, g.shfl_xor(value, offset));
  return value;
}

class cluster_group {
 public:
  struct arrival_token {};
  static void sync(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    ::grpo_simt::detail::cluster_arrive(file, line);
    ::grpo_simt::detail::cluster_wait(file, line);
  }
  static arrival_token barrier_arrive(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    ::grpo_simt::detail::cluster_arrive(file, line);
    return arrival_token{};
  }
  static void barrier_wait(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    ::grpo_simt::detail::cluster_wait(file, line);
  }
  static void barrier_wait(arrival_token&&, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    ::grpo_simt::detail::cluster_wait(file, line);
  }
  // The address of the same shared-memory object in block `rank` of the cluster.
  template <typename T>
  static T* map_shared_rank(T* addr, int rank, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return static_cast<T*>(::grpo_simt::detail::cluster_map_shared(addr, static_cast<unsigned>(rank), file, line));
  }
  template <typename T>
  static T& map_shared_rank(T& addr, int rank, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return *static_cast<T*>(::grpo_simt::detail::cluster_map_shared(&addr, static_cast<unsigned>(rank), file, line));
  }
  static unsigned query_shared_rank(const void* addr, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return ::grpo_simt::detail::cluster_query_shared_rank(addr, file, line);
  }
  static dim3 block_index() { return ::grpo_simt::detail::cluster_block_index(); }
  static unsigned block_rank() { return ::grpo_simt::detail::cluster_block_rank(); }
  static dim3 dim_blocks() { return ::grpo_simt::detail::cluster_dims(); }
  static unsigned num_blocks() { return ::grpo_simt::detail::cluster_num_blocks(); }
  static dim3 dim_threads() {
    const dim3 c = dim_blocks(), b = ::grpo_simt::detail::self()->block_dim;
    return dim3(c.x * b.x, c.y * b.y, c.z * b.z);
  }
  static unsigned num_threads() { return num_blocks() * detail::block_threads(); }
  static unsigned size() { return num_threads(); }
  static dim3 thread_index() {
    const dim3 bi = block_index(), b = ::grpo_simt::detail::self()->block_dim;
    const auto t = ::grpo_simt::detail::self()->thread_idx;
    return dim3(bi.x * b.x + t.x, bi.y * b.y + t.y, bi.z * b.z + t.z);
  }
  static unsigned thread_rank() { return block_rank() * detail::block_threads() + detail::linear_thread_rank(); }
  static bool is_valid() { return true; }
};

inline cluster_group this_cluster() { return cluster_group(); }

}  // namespace cooperative_groups
}  // namespace grpo_simt

namespace cooperative_groups = ::grpo_simt::cooperative_groups;
