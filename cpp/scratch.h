// sevc: scratch memory reused from call to call (large allocations would otherwise come fresh from
// the OS every time, zeroed page by page), mapped from the OS directly where mmap exists: kept
// apart from the heap, the buffers neither fragment it nor move glibc's threshold for mapping
// PyTorch's tensors.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <vector>
#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#define SEVC_SCRATCH_MMAP 1
#else
#define SEVC_SCRATCH_MMAP 0
#endif

namespace sevc {

// A buffer of at least `bytes` bytes (64-byte aligned, uninitialized), taken from a process-wide
// pool and given back to it when destroyed; the pool keeps at most kKeep bytes. Thread-safe.
class Scratch {
 public:
  explicit Scratch(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex());
      auto &pool = buffers();
      auto fit = std::min_element(pool.begin(), pool.end(), [bytes](const Buffer &a, const Buffer &b) {
        return (size(a) >= bytes ? size(a) : SIZE_MAX) < (size(b) >= bytes ? size(b) : SIZE_MAX);
      });
      if (fit != pool.end() && size(*fit) >= bytes) {
        buffer_ = std::move(*fit);
        pool.erase(fit);
        kept() -= size(buffer_);
        return;
      }
    }
    const size_t length = std::max<size_t>(bytes, 1);
    buffer_ = Buffer(allocate(length), Release{length});
  }
  ~Scratch() {
    std::lock_guard<std::mutex> lock(mutex());
    if (kept() + size(buffer_) > kKeep) return;  // freed
    kept() += size(buffer_);
    buffers().push_back(std::move(buffer_));
  }
  Scratch(const Scratch &) = delete;
  Scratch &operator=(const Scratch &) = delete;

  template <class T>
  T *as() const {
    return reinterpret_cast<T *>(buffer_.get());
  }

 private:
  static constexpr size_t kKeep = size_t{256} << 20;
  static constexpr size_t kHugePage = size_t{2} << 20;
  static uint8_t *allocate(size_t bytes) {
#if SEVC_SCRATCH_MMAP
    void *p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
    if (bytes >= kHugePage) madvise(p, bytes, MADV_HUGEPAGE);  // a fault per 2 MiB, not per 4 KiB
#endif
    return static_cast<uint8_t *>(p);
#else
    return new (std::align_val_t(64)) uint8_t[bytes];
#endif
  }
  struct Release {  // frees a buffer of `size` bytes
    size_t size;
    void operator()(uint8_t *p) const {
#if SEVC_SCRATCH_MMAP
      munmap(p, size);
#else
      ::operator delete[](p, std::align_val_t(64));
#endif
    }
  };
  using Buffer = std::unique_ptr<uint8_t[], Release>;
  static size_t size(const Buffer &buffer) { return buffer.get_deleter().size; }
  static std::mutex &mutex() {
    static std::mutex m;
    return m;
  }
  static std::vector<Buffer> &buffers() {
    static std::vector<Buffer> b;
    return b;
  }
  static size_t &kept() {
    static size_t k = 0;
    return k;
  }
  Buffer buffer_;
};

}  // namespace sevc
