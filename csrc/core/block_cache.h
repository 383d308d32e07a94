// A cache of freed memory blocks, bucketed by size, shared by the host allocator (core/tensor.cc) and the CUDA
// device allocator (cuda/memory.cu). A training loop allocates the same large tensors every step; a fresh
// host block costs a page fault per page on first write (3x the fused loss's own time at 1024 x 151936), and
// cudaMalloc / cudaFree synchronize the device. So freed blocks are kept, keyed by capacity, and handed out
// again for requests of the same size or up to 1/8 smaller (a shorter batch still hits).
//
// The cache is bounded (`limitVar` in MB from the environment, 0 disables it). When a new block would exceed
// the bound, the oldest cached blocks are freed first: the block just released is the one the next step is
// most likely to ask for again. Blocks are freed outside the lock, since freeing hundreds of MB takes a while.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

namespace grpo {

template <typename FreeBlock>
class BlockCache {
 public:
  // limitVar / defaultMb: the bound; minBytes: smaller blocks are never cached; freeBlock(void*) returns one
  // block to the system.
  BlockCache(const char* limitVar, long defaultMb, size_t minBytes, FreeBlock freeBlock)
      : limit_(readLimit(limitVar, defaultMb)), minBytes_(minBytes), free_(freeBlock) {}

  // A cached block of at least `capacity` bytes (at most 1/8 more), removed from the cache; nullptr if none.
  // `*taken` receives the block's own capacity (what give() must be passed when it comes back).
  void* take(size_t capacity, size_t* taken) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = blocks_.lower_bound(capacity);
    if (it == blocks_.end() || it->first > capacity + capacity / 8) return nullptr;
    void* p = it->second.ptr;
    *taken = it->first;
    cached_ -= it->first;
    order_.erase(it->second.age);
    blocks_.erase(it);
    return p;
  }

  // Keeps a freed block of `capacity` bytes; false when it is not cached (the caller frees it then).
  bool give(void* p, size_t capacity) {
    std::vector<void*> evicted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (capacity < minBytes_ || capacity > limit_) return false;
      while (cached_ + capacity > limit_ && !order_.empty()) {
        auto oldest = order_.begin()->second;
        evicted.push_back(oldest->second.ptr);
        cached_ -= oldest->first;
        blocks_.erase(oldest);
        order_.erase(order_.begin());
      }
      auto it = blocks_.emplace(capacity, Block{p, {}});
      it->second.age = order_.emplace(next_++, it).first;
      cached_ += capacity;
    }
    for (void* old : evicted) free_(old);
    return true;
  }

  size_t cachedBytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }

  // Frees every cached block (a failed allocation retries after this; releaseMemoryCache() calls it).
  void clear() {
    std::vector<void*> all;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& entry : blocks_) all.push_back(entry.second.ptr);
      blocks_.clear();
      order_.clear();
      cached_ = 0;
    }
    for (void* p : all) free_(p);
  }

 private:
  struct Block;
  using Blocks = std::multimap<size_t, Block>;
  using Ages = std::map<unsigned long long, typename Blocks::iterator>;
  struct Block {
    void* ptr;
    typename Ages::iterator age;  // its entry in order_
  };

  static size_t readLimit(const char* var, long defaultMb) {
    const char* env = std::getenv(var);
    long mb = env && *env ? std::atol(env) : defaultMb;
    return static_cast<size_t>(mb < 0 ? 0 : mb) << 20;
  }

  const size_t limit_, minBytes_;
  FreeBlock free_;
  std::mutex mutex_;
  Blocks blocks_;
  Ages order_;  // cached blocks by age, oldest first
  unsigned long long next_ = 0;
  size_t cached_ = 0;
};

}  // namespace grpo
