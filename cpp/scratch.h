// sevc: scratch memory reused from call to call (large allocations would otherwise come fresh from
// the OS every time, zeroed page by page).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

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
        return (a.size >= bytes ? a.size : SIZE_MAX) < (b.size >= bytes ? b.size : SIZE_MAX);
      });
      if (fit != pool.end() && fit->size >= bytes) {
        buffer_ = std::move(*fit);
        pool.erase(fit);
        kept() -= buffer_.size;
        return;
      }
    }
    buffer_.size = bytes;
    buffer_.data.reset(new (std::align_val_t(64)) uint8_t[bytes]);
  }
  ~Scratch() {
    std::lock_guard<std::mutex> lock(mutex());
    if (kept() + buffer_.size > kKeep) return;  // freed
    kept() += buffer_.size;
    buffers().push_back(std::move(buffer_));
  }
  Scratch(const Scratch &) = delete;
  Scratch &operator=(const Scratch &) = delete;

  template <class T>
  T *as() const {
    return reinterpret_cast<T *>(buffer_.data.get());
  }

 private:
  static constexpr size_t kKeep = size_t{256} << 20;
  struct AlignedDelete {
    void operator()(uint8_t *p) const { ::operator delete[](p, std::align_val_t(64)); }
  };
  struct Buffer {
    size_t size = 0;
    std::unique_ptr<uint8_t[], AlignedDelete> data;
  };
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
