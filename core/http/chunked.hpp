#pragma once

// Incremental decoder for the chunked transfer coding (RFC 9112 section 7.1). It only parses
// framing; body bytes are never copied, the caller forwards them in place. Never allocates.

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tollgate::http {

class ChunkedDecoder {
  public:
    struct Limits {
        size_t max_size_digits = 16;  // hex digits of a chunk-size, leading zeros included
        size_t max_extension = 4096;  // bytes between the chunk-size and its CRLF
        size_t max_trailers = 8192;   // bytes of the trailer section, final CRLF included
    };
    enum class Status { NeedMore, Done, Error };
    struct Step {
        Status status;
        size_t framing;  // bytes to discard from the front of the input
        size_t data;     // then this many bytes of body data to pass on
    };

    // ChunkedDecoder: `limits` are copied. Creates a decoder positioned before the first chunk.
    // (Two constructors instead of `const Limits& limits = {}`: a nested struct's default member
    // initializers cannot be used in a default argument of its enclosing class.)
    ChunkedDecoder() : ChunkedDecoder(Limits{}) {}
    explicit ChunkedDecoder(const Limits& limits);

    // next: `in` is the next contiguous bytes of a chunked body stream. Returns a Step: the caller
    // must discard `framing` bytes from the front of `in`, then pass on `data` bytes of body data,
    // then call again with what remains (or with more bytes once they arrive). Framing state
    // persists across calls, so a chunk-size line or the trailer may be split anywhere.
    // NeedMore: call again. Done: the last-chunk and trailer section (discarded) were consumed;
    // bytes after them belong to the next request and are not counted in framing. Error:
    // malformed body (answer 400); framing and data are then 0. Done and Error are sticky until
    // reset().
    Step next(std::string_view in);

    // body_bytes: no arguments. Returns the total number of data bytes handed out so far.
    uint64_t body_bytes() const { return body_bytes_; }

    // reset: no arguments, returns nothing. Prepares the decoder for a new body.
    void reset();

  private:
    enum class State : uint8_t {
        SizeStart,         // first hex digit of a chunk-size
        Size,              // more hex digits, ';', BWS or CR
        SizeBws,           // BWS after the size; only ';' or more BWS may follow
        Extension,         // inside chunk extensions, up to CR
        SizeLf,            // LF after the chunk-size line
        Data,              // chunk data
        DataCr,            // CR after chunk data
        DataLf,            // LF after chunk data
        TrailerLineStart,  // start of a trailer field line or the final CRLF
        TrailerName,       // field-name up to ':'
        TrailerValue,      // field-value up to CR
        TrailerLf,         // LF after a trailer field line
        FinalLf,           // LF of the final CRLF
        Done,
        Error,
    };

    Step fail();
    Step take_data(size_t framing, size_t available);

    Limits limits_;
    State state_ = State::SizeStart;
    uint64_t size_ = 0;       // chunk-size being parsed
    uint64_t remaining_ = 0;  // data bytes left in the current chunk
    uint64_t body_bytes_ = 0;
    size_t digits_ = 0;
    size_t extension_ = 0;
    size_t trailers_ = 0;
};

}  // namespace tollgate::http
