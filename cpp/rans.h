// sevc: 64-bit rANS entropy coder with indexed CDF tables and an escape path.
//
// Stream layout (identical to the coder the published SEVC / DCVC-DC models use):
//   byte 0          : ((parts - 1) << 4) | (size_field == 2 bytes ? 1 : 0)
//   (parts - 1) x   : little-endian byte size of every part but the last
//   parts           : each one an independent rANS stream of 32-bit little-endian words
// Symbols are 16-bit probability coded; a value outside its table's range is coded as
// the table's last (escape) symbol followed by 4-bit "bypass" chunks.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace sevc {

constexpr int kPrecision = 16;         // CDF tables sum to 1 << kPrecision
constexpr int kBypassBits = 4;         // bits per bypass chunk
constexpr uint32_t kBypassMax = (1u << kBypassBits) - 1;
constexpr int kLutBits = 8;            // decoder bucket table: 1 << kLutBits buckets per CDF
constexpr uint32_t kBypassStep = 0xFFFFFFF0u;  // step ids from here on are raw 4-bit puts

// A malformed, truncated or otherwise undecodable stream, or invalid coder input.
class StreamError : public std::runtime_error {
 public:
  explicit StreamError(const std::string &what) : std::runtime_error(what) {}
};

// One symbol's encoder step, precomputed: a division-free rANS put (Alverson reciprocal).
// Its frequency is (1 << kPrecision) - cmpl_freq.
struct EncStep {
  uint64_t rcp_freq;
  uint32_t bias;
  uint32_t cmpl_freq : 17;
  uint32_t rcp_shift : 15;
};

// A set of quantized CDFs, validated once and prepared for fast coding.
class CdfTables {
 public:
  // cdfs: [n, stride] row-major; lengths[i]: entries used in row i (symbols + 1, at most
  // stride); offsets[i]: the value coded by symbol 0 of row i (an int16 value). Everything
  // is validated before anything is allocated; n * stride must fit in an int32.
  CdfTables(const int32_t *cdfs, int n, int stride, const int32_t *lengths,
            const int32_t *offsets);

  int size() const { return static_cast<int>(lengths_.size()); }
  const int32_t *cdf(int i) const { return cdf_.data() + static_cast<size_t>(i) * stride_; }
  int32_t escape_symbol(int i) const { return lengths_[i] - 2; }
  int32_t offset(int i) const { return offsets_[i]; }
  uint32_t step_id(int i, int s) const { return static_cast<uint32_t>(i * stride_ + s); }
  const EncStep &step(uint32_t id) const { return steps_[id]; }
  // Smallest symbol s of row i whose upper CDF bound exceeds the bucket of `cum`.
  uint32_t bucket(int i, uint32_t cum) const {
    return lut_[(static_cast<size_t>(i) << kLutBits) + (cum >> (kPrecision - kLutBits))];
  }

 private:
  int stride_;
  std::vector<int32_t> cdf_;
  std::vector<int32_t> lengths_;
  std::vector<int32_t> offsets_;
  std::vector<EncStep> steps_;
  std::vector<uint16_t> lut_;
};

using TablesPtr = std::shared_ptr<const CdfTables>;

// Encoder of one part: collects steps in coding order, writes them backwards at flush.
// A step is a CdfTables step id, or kBypassStep + a 4-bit value; each run of steps
// coded with one CdfTables is a segment.
class PartEncoder {
 public:
  void push(const int16_t *symbols, const int32_t *indexes, size_t count, const TablesPtr &tables);
  std::vector<uint8_t> flush();
  void reset();

 private:
  struct Segment {
    TablesPtr tables;
    size_t end;
  };
  std::vector<uint32_t> steps_;
  std::vector<Segment> segments_;
};

// Decoder of one part, reading only inside the bytes it was given.
class PartDecoder {
 public:
  explicit PartDecoder(std::vector<uint32_t> words);
  void decode(const int32_t *indexes, size_t count, const CdfTables &tables, int16_t *out);
  size_t unread_bytes() const { return 4 * (words_.size() - pos_); }
  // Whether the state is back where the encoder started: true once every coded symbol is decoded.
  bool at_initial_state() const;

 private:
  std::vector<uint32_t> words_;
  size_t pos_ = 0;
  uint64_t state_ = 0;
};

// Multi-part encoder: each encode() call is split evenly over the parts.
class Encoder {
 public:
  Encoder(int parts, bool threaded);  // parts: 1..16, checked before anything is allocated
  ~Encoder();
  void encode(const int16_t *symbols, const int32_t *indexes, size_t count, const TablesPtr &tables);
  void flush();                         // starts the final coding (in the background if threaded)
  std::vector<uint8_t> get_stream();    // waits for flush(), returns the whole stream
  void reset();
  int parts() const { return static_cast<int>(parts_.size()); }

 private:
  void join();
  std::vector<PartEncoder> parts_;
  std::vector<std::vector<uint8_t>> results_;
  bool threaded_;
  std::vector<std::thread> workers_;
};

class Decoder {
 public:
  void set_stream(const uint8_t *data, size_t size);
  void decode(const int32_t *indexes, size_t count, const CdfTables &tables, int16_t *out);
  // Throws StreamError unless every part was read to its last byte and its state is back at
  // the encoder's initial state: catches trailing data, short decodes and corruption.
  void finish() const;
  int parts() const { return static_cast<int>(parts_.size()); }

 private:
  std::vector<PartDecoder> parts_;
};

// 16-bit quantized CDF of a pmf, exactly as the CompressAI / DCVC coders build it
// (rounding, renormalization, then stealing frequency so that no symbol has zero mass).
// pmf entries must be finite, non-negative and below 2^(32 - precision); O(n log n).
std::vector<uint32_t> pmf_to_quantized_cdf(const std::vector<float> &pmf, int precision);

// Split `count` items into `parts` chunks: every chunk count / parts, the last the rest.
inline size_t chunk_begin(size_t count, int parts, int i) { return (count / parts) * i; }
inline size_t chunk_end(size_t count, int parts, int i) {
  return i + 1 == parts ? count : (count / parts) * (i + 1);
}

}  // namespace sevc
