#pragma once

// Strict HTTP/1.1 request-head codec (RFC 9112 sections 2-3, 5-7).
//
// HeadScanner finds the end of a head in a growing receive buffer and rejects early what can never
// be valid (bare CR/LF, control bytes, obs-fold, size limits). parse_request_head() then splits a
// complete head into a RequestHead whose views point into the caller's buffer and applies the
// semantic rules (Host, Content-Length, Transfer-Encoding, Connection). Nothing here throws.

#include <cstddef>
#include <cstdint>
#include <memory_resource>
#include <string_view>
#include <vector>

namespace tollgate::http {

enum class Method : uint8_t { Get, Head, Post, Put, Delete, Options, Patch, Trace, Connect, Other };

struct Header {
    std::string_view name;
    std::string_view value;  // OWS trimmed on both sides
};

enum class BodyFraming : uint8_t { None, ContentLength, Chunked };

struct HeadLimits {
    size_t max_line = 8192;   // longest request line or header line, CRLF excluded
    size_t max_head = 32768;  // whole head, leading CRLFs and the final CRLFCRLF included
    size_t max_headers = 100;
};

struct RequestHead {
    explicit RequestHead(std::pmr::memory_resource* mr = std::pmr::get_default_resource())
        : headers(mr) {}

    Method method = Method::Other;
    std::string_view method_name;  // as sent (case-sensitive; "get" is Method::Other)
    std::string_view target;       // raw request-target
    std::string_view path;   // target up to '?' (still percent-encoded); absolute-form: path part
    std::string_view query;  // after '?', without it ("" when none)
    std::string_view host;   // Host header value, or authority of an absolute/authority-form target
    int version_minor = 1;   // HTTP/1.0 -> 0, HTTP/1.1 (and 1.2..1.9, see RFC 9110 6.2) -> 1
    std::pmr::vector<Header> headers;  // in order, repeated ones kept
    BodyFraming framing = BodyFraming::None;
    uint64_t content_length = 0;
    bool keep_alive = true;        // from version + Connection tokens (close / keep-alive)
    bool expect_continue = false;  // Expect: 100-continue (case-insensitive)
    bool upgrade = false;          // Connection contains "upgrade" and an Upgrade header exists

    // find: `name` is a field name compared case-insensitively. Returns the first header with
    // that name, or nullptr when there is none.
    const Header* find(std::string_view name) const;
};

// Scans bytes as they arrive to find where the head ends, rejecting early what can never be
// valid. Never allocates.
class HeadScanner {
  public:
    enum class Status { NeedMore, Complete, Error };

    // HeadScanner: `limits` are copied. Creates a scanner ready for the first request.
    explicit HeadScanner(const HeadLimits& limits);

    // scan: `buffered` is ALL bytes received so far for this request (the same prefix grows
    // between calls; the scanner resumes where it stopped, so total work is linear). Returns
    // NeedMore, Complete (head_length() is then the length of the head including the final
    // CRLFCRLF) or Error (error_status() is then 400, 414 or 431). Once Complete or Error, further
    // calls return the same status until reset().
    Status scan(std::string_view buffered);

    // head_length: no arguments. Returns the head length after Complete, otherwise 0.
    size_t head_length() const { return length_; }

    // error_status: no arguments. Returns the HTTP status after Error, otherwise 0.
    int error_status() const { return error_; }

    // reset: no arguments, returns nothing. Prepares the scanner for the next request on the
    // connection (the caller passes a buffer that starts at that request).
    void reset();

  private:
    enum class Phase : uint8_t { Leading, RequestLine, Headers };

    Status fail(int status);

    HeadLimits limits_;
    size_t pos_ = 0;         // next byte to examine
    size_t line_start_ = 0;  // first byte of the current line
    size_t headers_ = 0;     // header lines seen so far
    size_t length_ = 0;
    int error_ = 0;
    Phase phase_ = Phase::Leading;
    bool cr_ = false;  // the previous byte was CR, an LF must follow
    Status status_ = Status::NeedMore;
};

// parse_request_head: `head` is a complete head as delimited by HeadScanner (leading CRLFs
// allowed, ends with CRLFCRLF); `limits` are the same limits the scanner used; `out` receives the
// result (reset first; its views point into `head`). Returns 0 on success or an HTTP status: 400
// (malformed or ambiguous), 414 (request line too long), 431 (header line / head / header count
// too large), 501 (transfer-coding other than chunked), 505 (HTTP version other than 1.x).
int parse_request_head(std::string_view head, const HeadLimits& limits, RequestHead& out);

// method_name: `m` is a method. Returns its canonical upper-case name, or "OTHER" for Other.
const char* method_name(Method m);

}  // namespace tollgate::http
