#include "core/http/response_head.hpp"

#include "core/http/http_token.hpp"

namespace tollgate::http {

namespace {

using token::for_each_element;
using token::iequals;
using token::is_digit;
using token::is_field_byte;
using token::is_token;
using token::lower;
using token::trim_ows;

// "HTTP/1.x NNN" is fixed-width: the reason phrase, if any, starts after one more SP.
constexpr size_t kStatusCodeEnd = 12;

// status_line_byte_ok: `col` is the offset of `c` within the status line. Returns whether `c`
// may appear there: status-line = "HTTP/1." DIGIT SP 3DIGIT [ SP reason-phrase ], the status
// code 100..599, reason-phrase = *( HTAB / SP / VCHAR / obs-text ) (RFC 9112 4).
constexpr bool status_line_byte_ok(size_t col, unsigned char c) {
    constexpr std::string_view kPrefix = "HTTP/1.";
    if (col < kPrefix.size()) return c == static_cast<unsigned char>(kPrefix[col]);
    switch (col) {
        case 7:  // minor version
        case 10:
        case 11:
            return is_digit(c);
        case 8:
        case 12:
            return c == ' ';
        case 9:  // first status digit: 1xx..5xx only
            return c >= '1' && c <= '5';
        default:
            return is_field_byte(c);
    }
}

// Parses the status line (CRLF excluded). The scanner already enforced the byte rules; this is a
// second, self-contained check so the parser never trusts its input blindly.
bool parse_status_line(std::string_view line, ResponseHead& out) {
    if (line.size() < kStatusCodeEnd) return false;
    for (size_t i = 0; i < line.size(); ++i) {
        if (!status_line_byte_ok(i, static_cast<unsigned char>(line[i]))) return false;
    }
    out.version_minor = line[7] == '0' ? 0 : 1;
    out.status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    // "HTTP/1.1 200" and "HTTP/1.1 200 " both have an empty reason.
    out.reason = line.size() > kStatusCodeEnd + 1 ? line.substr(kStatusCodeEnd + 1) : "";
    return true;
}

struct TransferCodings {
    int chunked = 0;            // how many times "chunked" appeared
    bool last_chunked = false;  // the last coding seen is chunked
    bool malformed = false;     // an element that is not a bare token
};

// transfer-coding list of one field. Every element must be a bare token: empty elements, quoted
// strings, inner whitespace and parameters (none of the registered codings take one; on chunked
// they are a known smuggling obfuscation) are all malformed.
void parse_transfer_encoding(std::string_view value, TransferCodings& tc) {
    for_each_element(value, [&](std::string_view e) {
        if (!is_token(e)) {
            tc.malformed = true;
            return false;
        }
        tc.last_chunked = iequals(e, "chunked");
        if (tc.last_chunked) ++tc.chunked;
        return true;
    });
}

}  // namespace

const Header* ResponseHead::find(std::string_view name) const {
    for (const Header& h : headers) {
        if (iequals(h.name, name)) return &h;
    }
    return nullptr;
}

ResponseHeadScanner::ResponseHeadScanner(const ResponseLimits& limits) : limits_(limits) {}

void ResponseHeadScanner::reset() {
    pos_ = 0;
    line_start_ = 0;
    headers_ = 0;
    length_ = 0;
    phase_ = Phase::StatusLine;
    cr_ = false;
    status_ = Status::NeedMore;
}

ResponseHeadScanner::Status ResponseHeadScanner::fail() {
    status_ = Status::Error;
    return status_;
}

ResponseHeadScanner::Status ResponseHeadScanner::scan(std::string_view buffered) {
    if (status_ != Status::NeedMore) return status_;
    const size_t n = buffered.size();
    for (; pos_ < n; ++pos_) {
        const unsigned char c = static_cast<unsigned char>(buffered[pos_]);
        if (pos_ >= limits_.max_head) return fail();  // this byte would exceed max_head
        if (cr_) {
            if (c != '\n') return fail();  // bare CR
            cr_ = false;
            const size_t line_len = pos_ - 1 - line_start_;
            line_start_ = pos_ + 1;
            if (phase_ == Phase::StatusLine) {
                phase_ = Phase::Headers;
            } else if (line_len == 0) {
                ++pos_;
                length_ = pos_;
                status_ = Status::Complete;
                return status_;
            }
            continue;
        }
        const size_t col = pos_ - line_start_;
        if (c == '\r') {
            // the status line may end right after the status code, not before
            if (phase_ == Phase::StatusLine && col < kStatusCodeEnd) return fail();
            cr_ = true;
            continue;
        }
        if (c == '\n') return fail();  // bare LF
        if (col >= limits_.max_line) return fail();
        if (phase_ == Phase::StatusLine) {
            // Checked byte by byte so an HTTP/0.9 reply or garbage fails at once instead of
            // after max_head bytes.
            if (!status_line_byte_ok(col, c)) return fail();
        } else {
            if (col == 0) {
                if (c == ' ' || c == '\t') return fail();  // obs-fold
                if (++headers_ > limits_.max_headers) return fail();
            }
            if (!is_field_byte(c)) return fail();
        }
    }
    return status_;
}

bool parse_response_head(std::string_view head, const ResponseLimits& limits, bool request_was_head,
                         ResponseHead& out) {
    return parse_response_head(head, limits, request_was_head ? Method::Head : Method::Get, out);
}

bool parse_response_head(std::string_view head, const ResponseLimits& limits, Method request_method,
                         ResponseHead& out) {
    out.status = 0;
    out.version_minor = 1;
    out.reason = {};
    out.headers.clear();
    out.framing = ResponseFraming::None;
    out.content_length = 0;
    out.keep_alive = true;
    out.upgrade = false;
    out.tunnel = false;

    // Re-run the scanner so the byte-level rules (CRLF, CTL, obs-fold, limits) hold even when the
    // caller hands us something the scanner did not delimit.
    ResponseHeadScanner scanner(limits);
    if (scanner.scan(head) != ResponseHeadScanner::Status::Complete ||
        scanner.head_length() != head.size()) {
        return false;
    }

    size_t eol = head.find("\r\n");
    if (!parse_status_line(head.substr(0, eol), out)) return false;
    size_t pos = eol + 2;

    bool cl_seen = false;
    uint64_t cl = 0;
    bool te_seen = false;
    TransferCodings tc;
    bool conn_close = false;
    bool conn_keep_alive = false;
    bool has_upgrade = false;

    while (true) {
        eol = head.find("\r\n", pos);
        if (eol == pos) break;  // the empty line ending the head
        std::string_view line = head.substr(pos, eol - pos);
        pos = eol + 2;

        size_t colon = line.find(':');
        if (colon == std::string_view::npos) return false;
        std::string_view name = line.substr(0, colon);
        // also rejects whitespace between the name and the colon (RFC 9112 5.1)
        if (!is_token(name)) return false;
        std::string_view value = trim_ows(line.substr(colon + 1));
        out.headers.push_back(Header{name, value});

        switch (lower(name[0])) {
            case 'c':
                if (iequals(name, "content-length")) {
                    // validated even where it does not frame the body (HEAD, 204, 304): a bogus
                    // value is an invalid response either way
                    if (!token::parse_content_length(value, cl_seen, cl)) return false;
                } else if (iequals(name, "connection")) {
                    for_each_element(value, [&](std::string_view t) {
                        if (iequals(t, "close")) conn_close = true;
                        if (iequals(t, "keep-alive")) conn_keep_alive = true;
                        return true;
                    });
                }
                break;
            case 't':
                if (iequals(name, "transfer-encoding")) {
                    te_seen = true;
                    parse_transfer_encoding(value, tc);
                }
                break;
            case 'u':
                if (iequals(name, "upgrade") && !value.empty()) has_upgrade = true;
                break;
            default:
                break;
        }
    }

    const int status = out.status;
    const bool one_xx = status < 200;

    // Transfer-Encoding (RFC 9112 6.1, 6.3). A gateway never forwards an ambiguous framing.
    if (te_seen) {
        if (cl_seen) return false;
        // Exactly one chunked, and last. "gzip, chunked" passes through (the body stays coded).
        // Chunked not last would mean "read until close" per RFC 9112 6.3 item 4; we reject it
        // instead: no legitimate upstream sends it and it is a classic smuggling vector.
        if (tc.malformed || tc.chunked != 1 || !tc.last_chunked) return false;
        // HTTP/1.0 has no transfer codings: the framing is faulty (RFC 9112 6.1).
        if (out.version_minor == 0) return false;
        // A server MUST NOT send Transfer-Encoding in a 1xx or 204 (RFC 9112 6.1).
        if (one_xx || status == 204) return false;
    }

    out.keep_alive = out.version_minor >= 1 ? !conn_close : (conn_keep_alive && !conn_close);

    if (status == 101) {
        // Switching Protocols must name the new protocol (RFC 9110 15.2.2, 7.8), which HTTP/1.0
        // does not have.
        if (!has_upgrade || out.version_minor == 0) return false;
        out.upgrade = true;
        out.keep_alive = false;
    } else if (one_xx) {
        // informational: no body, the final response follows
    } else if (request_method == Method::Connect && status < 300) {
        out.tunnel = true;  // any 2xx, 204 included (RFC 9112 6.3 item 2)
        out.keep_alive = false;
    } else if (status == 204 || status == 304 || request_method == Method::Head) {
        // no body whatever the headers say (RFC 9112 6.3 item 1); Content-Length is kept as a
        // header only
    } else if (te_seen) {
        out.framing = ResponseFraming::Chunked;
    } else if (cl_seen) {
        out.framing = ResponseFraming::ContentLength;
        out.content_length = cl;
    } else {
        out.framing = ResponseFraming::UntilClose;
        out.keep_alive = false;
    }
    return true;
}

}  // namespace tollgate::http
