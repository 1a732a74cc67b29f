// sevc: splitting a loop over [0, count) into contiguous ranges run on their own threads.
#pragma once

#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

namespace sevc {

// Runs f(part, begin, end) on `parts` contiguous ranges of [0, count) (at most count of them),
// part = 0, 1, ...: the first on the calling thread, the others on new threads (on the calling
// one too where a thread cannot be started). f must not throw.
template <typename F>
void parallel_for(int64_t parts, int64_t count, const F &f) {
  parts = std::min(parts, count);
  if (parts <= 1) {
    if (count > 0) f(int64_t{0}, int64_t{0}, count);
    return;
  }
  const auto bound = [count, parts](int64_t i) { return count * i / parts; };
  std::vector<std::thread> workers;
  std::vector<int64_t> not_started;
  workers.reserve(static_cast<size_t>(parts));
  not_started.reserve(static_cast<size_t>(parts));
  for (int64_t i = 1; i < parts; ++i) {
    try {
      workers.emplace_back([&f, i, begin = bound(i), end = bound(i + 1)] { f(i, begin, end); });
    } catch (...) {
      not_started.push_back(i);
    }
  }
  f(int64_t{0}, int64_t{0}, bound(1));
  for (const int64_t i : not_started) f(i, bound(i), bound(i + 1));
  for (auto &worker : workers) worker.join();
}

}  // namespace sevc
