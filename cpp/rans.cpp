// sevc: 64-bit rANS entropy coder (see rans.h for the stream layout).
#include "rans.h"

#include <algorithm>
#include <cmath>
#include <future>

namespace sevc {
namespace {

constexpr uint64_t kRansL = 1ull << 31;  // lower bound of the normalized state interval

inline uint64_t mul_hi(uint64_t a, uint64_t b) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(a) * b) >> 64);
}

// x_max of a put: the state must be below it before the put, or 32 bits are emitted first.
inline uint64_t put_limit(uint32_t freq) { return static_cast<uint64_t>(freq) << (31 - kPrecision + 32); }

// Precomputes x -> (x / freq) * M + start + x % freq as x + bias + q * cmpl_freq with
// q = mul_hi(x, rcp_freq) >> rcp_shift, exact for every state x < 2^63 the coder can hold.
EncStep make_step(uint32_t start, uint32_t freq) {
  EncStep s{};
  const uint32_t m = 1u << kPrecision;
  s.cmpl_freq = m - freq;
  if (freq == 1) {
    // mul_hi(x, 2^64 - 1) = x - 1 for x >= 1, so the bias absorbs the missing M - 1.
    s.rcp_freq = ~0ull;
    s.rcp_shift = 0;
    s.bias = start + m - 1;
  } else {
    uint32_t shift = 0;
    while ((1u << shift) < freq) ++shift;
    const unsigned __int128 num = (static_cast<unsigned __int128>(1) << (shift + 63)) + freq - 1;
    s.rcp_freq = static_cast<uint64_t>(num / freq);
    s.rcp_shift = shift - 1;
    s.bias = start;
  }
  return s;
}

void check_indexes(const int32_t *indexes, size_t count, int table_count) {
  for (size_t i = 0; i < count; ++i) {
    if (indexes[i] < 0 || indexes[i] >= table_count) {
      throw std::invalid_argument("CDF index " + std::to_string(indexes[i]) +
                                  " outside the " + std::to_string(table_count) + " tables");
    }
  }
}

}  // namespace

CdfTables::CdfTables(const int32_t *cdfs, int n, int stride, const int32_t *lengths,
                     const int32_t *offsets)
    : stride_(stride),
      cdf_(cdfs, cdfs + static_cast<size_t>(n) * stride),
      lengths_(lengths, lengths + n),
      offsets_(offsets, offsets + n),
      steps_(static_cast<size_t>(n) * stride),
      lut_(static_cast<size_t>(n) << kLutBits) {
  if (n < 1 || stride < 2) throw std::invalid_argument("CDF tables must be a non-empty [n, >=2] array");
  for (int i = 0; i < n; ++i) {
    const int32_t len = lengths_[i];
    const int32_t *c = cdf(i);
    const std::string row = "CDF table " + std::to_string(i);
    if (len < 2 || len > stride) throw std::invalid_argument(row + ": length out of range");
    if (c[0] != 0 || c[len - 1] != (1 << kPrecision))
      throw std::invalid_argument(row + ": must start at 0 and end at 65536");
    for (int s = 0; s + 1 < len; ++s) {
      if (c[s + 1] <= c[s]) throw std::invalid_argument(row + ": not strictly increasing");
      steps_[step_id(i, s)] = make_step(static_cast<uint32_t>(c[s]), static_cast<uint32_t>(c[s + 1] - c[s]));
    }
    uint32_t s = 0;
    for (uint32_t b = 0; b < (1u << kLutBits); ++b) {
      const int32_t low = static_cast<int32_t>(b << (kPrecision - kLutBits));
      while (c[s + 1] <= low) ++s;
      lut_[(static_cast<size_t>(i) << kLutBits) + b] = static_cast<uint16_t>(s);
    }
  }
}

void PartEncoder::push(const int16_t *symbols, const int32_t *indexes, size_t count,
                       const TablesPtr &tables) {
  if (segments_.empty() || segments_.back().tables != tables) segments_.push_back({tables, steps_.size()});
  const size_t needed = steps_.size() + count + count / 16;
  if (needed > steps_.capacity()) steps_.reserve(std::max(needed, 2 * steps_.capacity()));
  for (size_t i = 0; i < count; ++i) {
    const int t = indexes[i];
    const int32_t escape = tables->escape_symbol(t);
    int32_t value = symbols[i] - tables->offset(t);
    uint32_t raw = 0;
    if (value < 0) {
      raw = static_cast<uint32_t>(-2 * value - 1);
      value = escape;
    } else if (value >= escape) {
      raw = static_cast<uint32_t>(2 * (value - escape));
      value = escape;
    }
    steps_.push_back(tables->step_id(t, value));
    if (value != escape) continue;
    uint32_t chunks = 0;
    while (chunks < 8 && (raw >> (chunks * kBypassBits)) != 0) ++chunks;
    uint32_t left = chunks;
    for (; left >= kBypassMax; left -= kBypassMax) steps_.push_back(kBypassStep + kBypassMax);
    steps_.push_back(kBypassStep + left);
    for (uint32_t j = 0; j < chunks; ++j) steps_.push_back(kBypassStep + ((raw >> (j * kBypassBits)) & kBypassMax));
  }
  segments_.back().end = steps_.size();
}

std::vector<uint8_t> PartEncoder::flush() {
  std::vector<uint32_t> words;  // emitted back to front
  words.reserve(steps_.size() / 2 + 2);
  uint64_t x = kRansL;
  const uint64_t bypass_limit = put_limit(1u << (kPrecision - kBypassBits));
  for (size_t seg = segments_.size(); seg-- > 0;) {
    const CdfTables &tables = *segments_[seg].tables;
    const size_t begin = seg ? segments_[seg - 1].end : 0;
    for (size_t i = segments_[seg].end; i-- > begin;) {
      const uint32_t id = steps_[i];
      if (id >= kBypassStep) {
        if (x >= bypass_limit) {
          words.push_back(static_cast<uint32_t>(x));
          x >>= 32;
        }
        x = (x << kBypassBits) | (id - kBypassStep);
        continue;
      }
      const EncStep &s = tables.step(id);
      if (x >= put_limit((1u << kPrecision) - s.cmpl_freq)) {
        words.push_back(static_cast<uint32_t>(x));
        x >>= 32;
      }
      x += s.bias + (mul_hi(x, s.rcp_freq) >> s.rcp_shift) * s.cmpl_freq;
    }
  }
  words.push_back(static_cast<uint32_t>(x >> 32));
  words.push_back(static_cast<uint32_t>(x));
  std::vector<uint8_t> bytes(words.size() * 4);
  size_t k = 0;
  for (auto it = words.rbegin(); it != words.rend(); ++it)
    for (int b = 0; b < 4; ++b) bytes[k++] = static_cast<uint8_t>(*it >> (8 * b));
  reset();
  return bytes;
}

void PartEncoder::reset() {
  steps_.clear();
  segments_.clear();
}

PartDecoder::PartDecoder(std::vector<uint32_t> words) : words_(std::move(words)) {
  if (words_.size() < 2) throw StreamError("rANS stream part shorter than its 8-byte state");
  state_ = static_cast<uint64_t>(words_[0]) | (static_cast<uint64_t>(words_[1]) << 32);
  pos_ = 2;
}

void PartDecoder::decode(const int32_t *indexes, size_t count, const CdfTables &tables,
                         int16_t *out) {
  // The state lives in locals while decoding: parts decode in parallel threads and
  // their members share cache lines.
  constexpr uint32_t mask = (1u << kPrecision) - 1;
  uint64_t x = state_;
  size_t pos = pos_;
  const uint32_t *words = words_.data();
  const size_t size = words_.size();
  auto renormalize = [&] {
    if (x >= kRansL) return;
    if (pos >= size) throw StreamError("rANS stream is truncated or corrupted");
    x = (x << 32) | words[pos++];
  };
  auto get_bits = [&](uint32_t n) {
    const uint32_t value = static_cast<uint32_t>(x & ((1u << n) - 1));
    x >>= n;
    renormalize();
    return value;
  };

  for (size_t i = 0; i < count; ++i) {
    const int t = indexes[i];
    const uint32_t cum = static_cast<uint32_t>(x & mask);
    const int32_t *c = tables.cdf(t);
    uint32_t s = tables.bucket(t, cum);
    while (static_cast<uint32_t>(c[s + 1]) <= cum) ++s;
    const uint32_t start = static_cast<uint32_t>(c[s]);
    x = static_cast<uint64_t>(c[s + 1] - c[s]) * (x >> kPrecision) + cum - start;
    renormalize();

    int32_t value = static_cast<int32_t>(s);
    const int32_t escape = tables.escape_symbol(t);
    if (value == escape) {
      uint32_t chunk = get_bits(kBypassBits);
      uint32_t chunks = chunk;
      while (chunk == kBypassMax && chunks <= 8) {
        chunk = get_bits(kBypassBits);
        chunks += chunk;
      }
      if (chunks > 8) throw StreamError("rANS stream is corrupted (escape value too long)");
      uint32_t raw = 0;
      for (uint32_t j = 0; j < chunks; ++j) raw |= get_bits(kBypassBits) << (j * kBypassBits);
      const int32_t half = static_cast<int32_t>(raw >> 1);
      value = (raw & 1) ? -half - 1 : half + escape;
    }
    out[i] = static_cast<int16_t>(value + tables.offset(t));
  }
  state_ = x;
  pos_ = pos;
}

Encoder::Encoder(int parts, bool threaded) : parts_(parts), results_(parts), threaded_(threaded) {
  if (parts < 1 || parts > 16) throw std::invalid_argument("stream_part must be in 1..16");
}

Encoder::~Encoder() { join(); }

void Encoder::join() {
  for (auto &w : workers_) w.join();
  workers_.clear();
}

void Encoder::encode(const int16_t *symbols, const int32_t *indexes, size_t count,
                     const TablesPtr &tables) {
  check_indexes(indexes, count, tables->size());
  join();
  const int n = parts();
  auto push = [&](int i) {
    const size_t b = chunk_begin(count, n, i);
    parts_[i].push(symbols + b, indexes + b, chunk_end(count, n, i) - b, tables);
  };
  if (n == 1) {
    push(0);
    return;
  }
  std::vector<std::future<void>> jobs;
  for (int i = 0; i < n; ++i) jobs.push_back(std::async(std::launch::async, push, i));
  for (auto &j : jobs) j.get();
}

void Encoder::flush() {
  join();
  const int n = parts();
  if (!threaded_ && n == 1) {
    results_[0] = parts_[0].flush();
    return;
  }
  for (int i = 0; i < n; ++i) workers_.emplace_back([this, i] { results_[i] = parts_[i].flush(); });
}

std::vector<uint8_t> Encoder::get_stream() {
  join();
  const int n = parts();
  size_t largest = 0, total = 0;
  for (int i = 0; i < n; ++i) {
    if (i + 1 < n) largest = std::max(largest, results_[i].size());
    total += results_[i].size();
  }
  const int field = largest > 65535 ? 4 : 2;
  std::vector<uint8_t> out;
  out.reserve(1 + (n - 1) * field + total);
  out.push_back(static_cast<uint8_t>(((n - 1) << 4) + (field == 2 ? 1 : 0)));
  for (int i = 0; i + 1 < n; ++i)
    for (int b = 0; b < field; ++b) out.push_back(static_cast<uint8_t>(results_[i].size() >> (8 * b)));
  for (const auto &r : results_) out.insert(out.end(), r.begin(), r.end());
  return out;
}

void Encoder::reset() {
  join();
  for (auto &p : parts_) p.reset();
  for (auto &r : results_) r.clear();
}

void Decoder::set_stream(const uint8_t *data, size_t size) {
  parts_.clear();
  if (size < 1) throw StreamError("empty rANS stream");
  const uint8_t flag = data[0];
  const int n = (flag >> 4) + 1;
  if ((flag & 0x0f) > 1) throw StreamError("rANS stream has an invalid header byte");
  const size_t field = (flag & 0x0f) == 1 ? 2 : 4;
  size_t pos = 1 + (n - 1) * field;
  if (pos > size) throw StreamError("rANS stream header is truncated");
  std::vector<size_t> sizes;
  size_t used = pos;
  for (int i = 0; i + 1 < n; ++i) {
    size_t s = 0;
    for (size_t b = 0; b < field; ++b) s |= static_cast<size_t>(data[1 + i * field + b]) << (8 * b);
    sizes.push_back(s);
    used += s;
    if (used > size) throw StreamError("rANS stream is shorter than its header says");
  }
  sizes.push_back(size - used);
  std::vector<PartDecoder> parts;
  for (size_t s : sizes) {
    if (s % 4 != 0) throw StreamError("rANS stream part is not a whole number of 32-bit words");
    std::vector<uint32_t> words(s / 4);
    for (size_t w = 0; w < words.size(); ++w, pos += 4)
      words[w] = static_cast<uint32_t>(data[pos]) | (static_cast<uint32_t>(data[pos + 1]) << 8) |
                 (static_cast<uint32_t>(data[pos + 2]) << 16) | (static_cast<uint32_t>(data[pos + 3]) << 24);
    parts.emplace_back(std::move(words));
  }
  parts_ = std::move(parts);
}

void Decoder::decode(const int32_t *indexes, size_t count, const CdfTables &tables, int16_t *out) {
  if (parts_.empty()) throw StreamError("no rANS stream was set before decoding");
  check_indexes(indexes, count, tables.size());
  const int n = parts();
  if (n == 1) {
    parts_[0].decode(indexes, count, tables, out);
    return;
  }
  std::vector<std::future<void>> jobs;
  for (int i = 0; i < n; ++i) {
    const size_t b = chunk_begin(count, n, i);
    const size_t e = chunk_end(count, n, i);
    jobs.push_back(std::async(std::launch::async, [this, i, b, e, indexes, &tables, out] {
      parts_[i].decode(indexes + b, e - b, tables, out + b);
    }));
  }
  for (auto &j : jobs) j.wait();
  for (auto &j : jobs) j.get();
}

std::vector<uint32_t> pmf_to_quantized_cdf(const std::vector<float> &pmf, int precision) {
  if (pmf.empty()) throw std::invalid_argument("pmf is empty");
  if (precision < 1 || precision > 16) throw std::invalid_argument("precision must be in 1..16");
  const uint64_t total_mass = 1ull << precision;
  std::vector<uint32_t> cdf(pmf.size() + 1, 0);
  uint64_t total = 0;
  for (size_t i = 0; i < pmf.size(); ++i) {
    const float scaled = pmf[i] * static_cast<float>(total_mass);
    cdf[i + 1] = (scaled > 0.0f && std::isfinite(scaled)) ? static_cast<uint32_t>(std::round(scaled)) : 0;
    total += cdf[i + 1];
  }
  if (total == 0) throw std::invalid_argument("pmf has no mass");
  for (auto &v : cdf) v = static_cast<uint32_t>((total_mass * v) / total);
  for (size_t i = 1; i < cdf.size(); ++i) cdf[i] += cdf[i - 1];
  cdf.back() = static_cast<uint32_t>(total_mass);

  // Give every zero-frequency symbol one unit, taken from the smallest symbol that can spare it.
  const int n = static_cast<int>(cdf.size()) - 1;
  for (int i = 0; i < n; ++i) {
    if (cdf[i] != cdf[i + 1]) continue;
    uint32_t best_freq = ~0u;
    int best = -1;
    for (int j = 0; j < n; ++j) {
      const uint32_t f = cdf[j + 1] - cdf[j];
      if (f > 1 && f < best_freq) {
        best_freq = f;
        best = j;
      }
    }
    if (best < 0) throw std::invalid_argument("pmf has more symbols than the precision allows");
    if (best < i) {
      for (int j = best + 1; j <= i; ++j) --cdf[j];
    } else {
      for (int j = i + 1; j <= best; ++j) ++cdf[j];
    }
  }
  return cdf;
}

}  // namespace sevc
