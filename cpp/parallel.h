// sevc: splitting a loop over [0, count) into contiguous ranges run on their own threads.
//
// The threads are a pool kept from call to call (starting threads for every call costs tens of
// microseconds each, which small convolutions cannot afford). A call that finds the pool busy
// (another thread of the process in a parallel_for) or that runs in a forked child starts its own
// threads instead, so calls never wait for each other and never deadlock.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace sevc {

namespace detail {

inline long process_id() {
#if defined(__unix__) || defined(__APPLE__)
  return static_cast<long>(::getpid());
#else
  return 0;
#endif
}

// The pool: workers that wait for a job (a function of the part index), claim parts until none
// is left, and report them done. Never destroyed (its threads wait until the process ends).
class Pool {
 public:
  // Runs job(i) for i in [0, parts) on the calling thread and on up to parts - 1 workers; false
  // (nothing run) if the pool is busy or belongs to another process.
  bool run(int64_t parts, const std::function<void(int64_t)> &job) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock() || owner_ != process_id()) return false;
    if (!grow(parts - 1)) return false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &job;
      parts_ = parts;
      next_.store(0);
      unfinished_ = parts;
      ++generation_;
    }
    wake_.notify_all();
    work();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return unfinished_ == 0; });
    job_ = nullptr;
    return true;
  }

  static Pool &instance() {
    static Pool *pool = new Pool;  // never destroyed: its workers block until the process exits
    return *pool;
  }

 private:
  Pool() : owner_(process_id()) {}

  // At least `count` workers (false if a thread could not be started).
  bool grow(int64_t count) {
    try {
      while (static_cast<int64_t>(workers_) < count) {
        std::thread(&Pool::serve, this).detach();
        ++workers_;
      }
    } catch (...) {
      return false;
    }
    return true;
  }

  // Claims and runs parts of the current job until none is left.
  void work() {
    for (int64_t i = next_.fetch_add(1); i < parts_; i = next_.fetch_add(1)) {
      (*job_)(i);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--unfinished_ == 0) done_.notify_all();
    }
  }

  void serve() {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen && job_ != nullptr; });
        seen = generation_;
      }
      work();
    }
  }

  const long owner_;
  std::mutex busy_, mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int64_t)> *job_ = nullptr;
  int64_t parts_ = 0, unfinished_ = 0;
  std::atomic<int64_t> next_{0};
  uint64_t generation_ = 0;
  size_t workers_ = 0;
};

}  // namespace detail

// Runs f(part, begin, end) on `parts` contiguous ranges of [0, count) (at most count of them),
// part = 0, 1, ...: the calling thread and the pool's threads take them (threads of its own where
// the pool is busy; the calling thread alone where none can be started). f must not throw.
template <typename F>
void parallel_for(int64_t parts, int64_t count, const F &f) {
  parts = std::min(parts, count);
  if (parts <= 1) {
    if (count > 0) f(int64_t{0}, int64_t{0}, count);
    return;
  }
  const auto bound = [count, parts](int64_t i) { return count * i / parts; };
  const std::function<void(int64_t)> job = [&](int64_t i) { f(i, bound(i), bound(i + 1)); };
  if (detail::Pool::instance().run(parts, job)) return;
  std::vector<std::thread> workers;
  std::vector<int64_t> not_started;
  workers.reserve(static_cast<size_t>(parts));
  for (int64_t i = 1; i < parts; ++i) {
    try {
      workers.emplace_back(job, i);
    } catch (...) {
      not_started.push_back(i);
    }
  }
  job(0);
  for (const int64_t i : not_started) job(i);
  for (auto &worker : workers) worker.join();
}

}  // namespace sevc
