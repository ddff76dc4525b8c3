#pragma once

// Strict HTTP/1.1 response-head codec for upstream replies (RFC 9112 sections 4-7), the
// counterpart of request_head.hpp used by the reverse proxy.
//
// ResponseHeadScanner finds the end of a head in a growing receive buffer and rejects early what
// can never be valid (anything but "HTTP/1.x NNN" at the start, bare CR/LF, control bytes,
// obs-fold, size limits). parse_response_head() then splits a complete head into a ResponseHead
// whose views point into the caller's buffer and decides the body framing (RFC 9112 6.3).
// Every rejection means "invalid upstream response": the proxy answers 502 and closes the
// upstream connection. Nothing here throws.

#include <cstddef>
#include <cstdint>
#include <memory_resource>
#include <string_view>
#include <vector>

#include "core/http/request_head.hpp"

namespace tollgate::http {

struct ResponseLimits {
    size_t max_line = 8192;    // longest status line or header line, CRLF excluded
    size_t max_head = 65536;   // whole head, final CRLFCRLF included (proxy_buffer_size)
    size_t max_headers = 200;  // header lines
};

enum class ResponseFraming : uint8_t {
    None,           // no body: 1xx, 204, 304, an answer to HEAD, or a 2xx answer to CONNECT
    ContentLength,  // exactly content_length bytes follow
    Chunked,        // chunked body (ChunkedDecoder), possibly with other codings applied first
    UntilClose,     // the body ends when the upstream closes the connection
};

struct ResponseHead {
    explicit ResponseHead(std::pmr::memory_resource* mr = std::pmr::get_default_resource())
        : headers(mr) {}

    int status = 0;           // 100..599
    int version_minor = 1;    // HTTP/1.0 -> 0, HTTP/1.1 (and 1.2..1.9, see RFC 9110 6.2) -> 1
    std::string_view reason;  // as sent, may be empty (also when the status line ends after NNN)
    std::pmr::vector<Header> headers;  // in order, repeated ones kept, values OWS trimmed
    ResponseFraming framing = ResponseFraming::None;
    uint64_t content_length = 0;  // the body length when framing is ContentLength, otherwise 0
    bool keep_alive = true;       // the upstream connection may be reused after this response
    bool upgrade = false;         // 101 with an Upgrade header: the connection now speaks another
                                  // protocol, relay bytes both ways
    bool tunnel = false;  // 2xx answer to CONNECT: the connection is a tunnel after the head

    // find: `name` is a field name compared case-insensitively. Returns the first header with
    // that name, or nullptr when there is none.
    const Header* find(std::string_view name) const;

    // informational: no arguments. Returns true for a 1xx other than 101 (100 Continue, 103
    // Early Hints, ...): the final response follows on the same connection.
    bool informational() const { return status >= 100 && status < 200 && status != 101; }
};

// Scans bytes as they arrive to find where a response head ends, rejecting early what can never
// be valid. Never allocates.
class ResponseHeadScanner {
  public:
    enum class Status { NeedMore, Complete, Error };

    // ResponseHeadScanner: `limits` are copied. Creates a scanner ready for the first response.
    explicit ResponseHeadScanner(const ResponseLimits& limits);

    // scan: `buffered` is ALL bytes received so far for this response (the same prefix grows
    // between calls; the scanner resumes where it stopped, so total work is linear). Returns
    // NeedMore, Complete (head_length() is then the length of the head including the final
    // CRLFCRLF) or Error (invalid upstream response: answer 502). Once Complete or Error,
    // further calls return the same status until reset().
    Status scan(std::string_view buffered);

    // head_length: no arguments. Returns the head length after Complete, otherwise 0.
    size_t head_length() const { return length_; }

    // reset: no arguments, returns nothing. Prepares the scanner for the next head on the
    // connection (after a 1xx, or after a whole response); the caller passes a buffer that
    // starts at that head.
    void reset();

  private:
    enum class Phase : uint8_t { StatusLine, Headers };

    Status fail();

    ResponseLimits limits_;
    size_t pos_ = 0;         // next byte to examine
    size_t line_start_ = 0;  // first byte of the current line
    size_t headers_ = 0;     // header lines seen so far
    size_t length_ = 0;
    Phase phase_ = Phase::StatusLine;
    bool cr_ = false;  // the previous byte was CR, an LF must follow
    Status status_ = Status::NeedMore;
};

// parse_response_head: `head` is a complete response head as delimited by ResponseHeadScanner
// (starts with the status line, ends with CRLFCRLF); `limits` are the limits the scanner used;
// `request_was_head` tells whether the request was HEAD (the response then has no body whatever
// its headers say); `out` receives the result (reset first; its views point into `head`).
// Returns true on success, false for any invalid or ambiguous response (answer 502 and close the
// upstream connection). The framing of a 2xx answer to CONNECT needs the overload below.
bool parse_response_head(std::string_view head, const ResponseLimits& limits, bool request_was_head,
                         ResponseHead& out);

// parse_response_head: as above, with `request_method` the method of the request this response
// answers: Head means no body; a 2xx answer to Connect has no body and turns the connection into
// a tunnel (RFC 9112 6.3 items 1-2). Returns true on success, false for an invalid response.
bool parse_response_head(std::string_view head, const ResponseLimits& limits, Method request_method,
                         ResponseHead& out);

}  // namespace tollgate::http
