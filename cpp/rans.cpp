// sevc: 64-bit rANS entropy coder (see rans.h for the stream layout).
#include "rans.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <functional>
#include <future>
#include <queue>
#include <utility>

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

// `parts` if it is a valid part count (1..16): checked before the encoder allocates its parts.
int checked_parts(int parts) {
  if (parts < 1 || parts > 16)
    throw std::invalid_argument("stream_part must be in 1..16, got " + std::to_string(parts));
  return parts;
}

}  // namespace

CdfTables::CdfTables(const int32_t *cdfs, int n, int stride, const int32_t *lengths,
                     const int32_t *offsets)
    : stride_(stride) {
  if (n < 1 || stride < 2) throw std::invalid_argument("CDF tables must be a non-empty [n, >=2] array");
  if (static_cast<int64_t>(n) * stride > INT32_MAX)
    throw std::invalid_argument("CDF tables hold more than 2**31 - 1 entries");
  // Validate every row before allocating: the coder's tables are several times the input's size.
  for (int i = 0; i < n; ++i) {
    const int32_t len = lengths[i];
    const int32_t *c = cdfs + static_cast<size_t>(i) * stride;
    const std::string row = "CDF table " + std::to_string(i);
    if (len < 2 || len > stride) throw std::invalid_argument(row + ": length out of range");
    if (offsets[i] < INT16_MIN || offsets[i] > INT16_MAX)
      throw std::invalid_argument(row + ": offset outside the int16 range");
    if (c[0] != 0 || c[len - 1] != (1 << kPrecision))
      throw std::invalid_argument(row + ": must start at 0 and end at 65536");
    for (int s = 0; s + 1 < len; ++s)
      if (c[s + 1] <= c[s]) throw std::invalid_argument(row + ": not strictly increasing");
  }
  cdf_.assign(cdfs, cdfs + static_cast<size_t>(n) * stride);
  lengths_.assign(lengths, lengths + n);
  offsets_.assign(offsets, offsets + n);
  steps_.resize(static_cast<size_t>(n) * stride);
  lut_.resize(static_cast<size_t>(n) << kLutBits);
  for (int i = 0; i < n; ++i) {
    const int32_t *c = cdf(i);
    for (int s = 0; s + 1 < lengths_[i]; ++s)
      steps_[step_id(i, s)] = make_step(static_cast<uint32_t>(c[s]), static_cast<uint32_t>(c[s + 1] - c[s]));
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

    int64_t value = s;  // 64-bit: a corrupted escape can carry any 32-bit value
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
      const int64_t half = raw >> 1;
      value = (raw & 1) ? -half - 1 : half + escape;
    }
    value += tables.offset(t);
    if (value < INT16_MIN || value > INT16_MAX)
      throw StreamError("rANS stream is corrupted (decoded value outside the int16 range)");
    out[i] = static_cast<int16_t>(value);
  }
  state_ = x;
  pos_ = pos;
}

bool PartDecoder::at_initial_state() const { return state_ == kRansL; }

Encoder::Encoder(int parts, bool threaded)
    : parts_(checked_parts(parts)), results_(parts), threaded_(threaded) {}

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

void Decoder::finish() const {
  if (parts_.empty()) throw StreamError("no rANS stream was set before finishing");
  // The encoder starts every part at kRansL and emits exactly the words the decoder reads back,
  // so a part decoded to its end has no word left and its state is back at kRansL.
  size_t unread = 0;
  for (const auto &p : parts_) unread += p.unread_bytes();
  if (unread > 0)
    throw StreamError("rANS stream has " + std::to_string(unread) + " bytes left after its last symbol "
                      "(trailing data, corruption, or fewer symbols decoded than coded)");
  for (const auto &p : parts_)
    if (!p.at_initial_state())
      throw StreamError("rANS stream does not end in the encoder's initial state "
                        "(corrupted, or fewer symbols decoded than coded)");
}

std::vector<uint32_t> pmf_to_quantized_cdf(const std::vector<float> &pmf, int precision) {
  if (pmf.empty()) throw std::invalid_argument("pmf is empty");
  if (precision < 1 || precision > 16) throw std::invalid_argument("precision must be in 1..16");
  const uint64_t total_mass = 1ull << precision;
  const float entry_limit = std::ldexp(1.0f, 32 - precision);  // keeps every scaled entry in uint32
  for (size_t i = 0; i < pmf.size(); ++i) {
    if (!(pmf[i] >= 0.0f) || !(pmf[i] < entry_limit))  // also rejects NaN and infinities
      throw std::invalid_argument("pmf entry " + std::to_string(i) + " is " + std::to_string(pmf[i]) +
                                  ": entries must be finite, non-negative and below 2**(32 - precision)");
  }
  std::vector<uint32_t> cdf(pmf.size() + 1, 0);
  uint64_t total = 0;
  for (size_t i = 0; i < pmf.size(); ++i) {
    const float scaled = pmf[i] * static_cast<float>(total_mass);
    cdf[i + 1] = scaled > 0.0f ? static_cast<uint32_t>(std::round(scaled)) : 0;
    total += cdf[i + 1];
  }
  if (total == 0) throw std::invalid_argument("pmf has no mass");
  for (auto &v : cdf) v = static_cast<uint32_t>((total_mass * v) / total);
  for (size_t i = 1; i < cdf.size(); ++i) cdf[i] += cdf[i - 1];
  cdf.back() = static_cast<uint32_t>(total_mass);

  // Give every zero-frequency symbol, in index order, one unit taken from the symbol with the
  // smallest frequency > 1 (the lowest index on ties). Only those two frequencies change, a
  // donor never drops below 1 and zeros never donate, so a min-heap of (frequency, symbol)
  // over the donors finds each one in O(log n). With n <= total_mass a donor always exists:
  // the other n - 1 symbols hold total_mass >= n units.
  const size_t n = pmf.size();
  if (n > total_mass) throw std::invalid_argument("pmf has more symbols than the precision allows");
  std::vector<uint32_t> freq(n);
  using Donor = std::pair<uint32_t, size_t>;
  std::vector<Donor> heap;
  for (size_t i = 0; i < n; ++i) {
    freq[i] = cdf[i + 1] - cdf[i];
    if (freq[i] > 1) heap.emplace_back(freq[i], i);
  }
  std::priority_queue<Donor, std::vector<Donor>, std::greater<Donor>> donors(std::greater<Donor>(),
                                                                              std::move(heap));
  for (size_t i = 0; i < n; ++i) {
    if (freq[i] != 0) continue;
    const auto [f, j] = donors.top();
    donors.pop();
    freq[j] = f - 1;
    if (freq[j] > 1) donors.emplace(freq[j], j);
    freq[i] = 1;
  }
  for (size_t i = 0; i < n; ++i) cdf[i + 1] = cdf[i] + freq[i];
  return cdf;
}

}  // namespace sevc
