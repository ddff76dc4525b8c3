#include "core/http/request_head.hpp"

#include "core/http/http_token.hpp"

namespace tollgate::http {

namespace {

using token::for_each_element;
using token::iequals;
using token::is_digit;
using token::is_token;
using token::lower;
using token::parse_content_length;
using token::trim_ows;

constexpr int kBadRequest = 400;
constexpr int kUriTooLong = 414;
constexpr int kHeaderTooLarge = 431;
constexpr int kNotImplemented = 501;
constexpr int kVersionNotSupported = 505;

constexpr bool is_hex(unsigned char c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

constexpr bool is_alpha(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// unreserved / sub-delims (RFC 3986 2.2, 2.3): the reg-name characters besides pct-encoded.
constexpr bool is_host_char(unsigned char c) {
    if (is_alpha(c) || is_digit(c)) return true;
    switch (c) {
        case '-':
        case '.':
        case '_':
        case '~':
        case '!':
        case '$':
        case '&':
        case '\'':
        case '(':
        case ')':
        case '*':
        case '+':
        case ',':
        case ';':
        case '=':
            return true;
        default:
            return false;
    }
}

// uri-host [ ":" port ] where uri-host is IP-literal or a non-empty reg-name (IPv4 addresses are
// reg-names syntactically). With `require_port` (authority-form) the port must be present.
bool valid_authority(std::string_view s, bool require_port) {
    size_t i = 0;
    if (s.empty()) return false;
    if (s[0] == '[') {
        size_t close = s.find(']');
        if (close == std::string_view::npos || close == 1) return false;
        for (i = 1; i < close; ++i) {
            unsigned char c = static_cast<unsigned char>(s[i]);
            if (!is_host_char(c) && c != ':') return false;
        }
        i = close + 1;
    } else {
        while (i < s.size() && s[i] != ':') {
            unsigned char c = static_cast<unsigned char>(s[i]);
            if (c == '%') {
                if (i + 2 >= s.size() || !is_hex(static_cast<unsigned char>(s[i + 1])) ||
                    !is_hex(static_cast<unsigned char>(s[i + 2]))) {
                    return false;
                }
                i += 3;
                continue;
            }
            if (!is_host_char(c)) return false;
            ++i;
        }
        if (i == 0) return false;
    }
    if (i == s.size()) return !require_port;
    if (s[i] != ':') return false;
    std::string_view port = s.substr(i + 1);
    if (port.size() > 5 || (require_port && port.empty())) return false;
    for (char c : port) {
        if (!is_digit(static_cast<unsigned char>(c))) return false;
    }
    return true;
}

Method lookup_method(std::string_view m) {
    switch (m.size()) {
        case 3:
            if (m == "GET") return Method::Get;
            if (m == "PUT") return Method::Put;
            break;
        case 4:
            if (m == "HEAD") return Method::Head;
            if (m == "POST") return Method::Post;
            break;
        case 5:
            if (m == "PATCH") return Method::Patch;
            if (m == "TRACE") return Method::Trace;
            break;
        case 6:
            if (m == "DELETE") return Method::Delete;
            break;
        case 7:
            if (m == "OPTIONS") return Method::Options;
            if (m == "CONNECT") return Method::Connect;
            break;
        default:
            break;
    }
    return Method::Other;
}

// HTTP-version = "HTTP/" DIGIT "." DIGIT. A lone major ("HTTP/2", "HTTP/3") or another major is
// 505; anything else malformed is 400. Minors 2..9 of 1.x are processed as 1.1 (RFC 9110 6.2).
int parse_version(std::string_view v, int& minor) {
    if (v.size() < 6 || v.substr(0, 5) != "HTTP/") return kBadRequest;
    unsigned char major = static_cast<unsigned char>(v[5]);
    if (!is_digit(major)) return kBadRequest;
    if (v.size() == 6) return major == '1' ? kBadRequest : kVersionNotSupported;
    if (v.size() != 8 || v[6] != '.' || !is_digit(static_cast<unsigned char>(v[7]))) {
        return kBadRequest;
    }
    if (major != '1') return kVersionNotSupported;
    minor = v[7] == '0' ? 0 : 1;
    return 0;
}

void split_query(std::string_view pq, RequestHead& out) {
    size_t q = pq.find('?');
    if (q == std::string_view::npos) {
        out.path = pq;
        out.query = {};
    } else {
        out.path = pq.substr(0, q);
        out.query = pq.substr(q + 1);
    }
}

// Classifies the request-target and fills path / query / target-authority.
int parse_target(std::string_view target, RequestHead& out, std::string_view& authority) {
    for (char ch : target) {
        unsigned char c = static_cast<unsigned char>(ch);
        // visible ASCII only; a fragment is never part of a request-target
        if (c <= 0x20 || c >= 0x7F || c == '#') return kBadRequest;
    }
    if (out.method == Method::Connect) {  // authority-form, and only that (RFC 9112 3.2.3)
        if (!valid_authority(target, true)) return kBadRequest;
        authority = target;
        return 0;
    }
    if (target == "*") {  // asterisk-form, OPTIONS only (RFC 9112 3.2.4)
        if (out.method != Method::Options) return kBadRequest;
        out.path = target;
        return 0;
    }
    if (target[0] == '/') {  // origin-form
        split_query(target, out);
        return 0;
    }
    // absolute-form: only http and https make sense for a gateway
    size_t sep = target.find("://");
    if (sep == std::string_view::npos) return kBadRequest;
    std::string_view scheme = target.substr(0, sep);
    if (!iequals(scheme, "http") && !iequals(scheme, "https")) return kBadRequest;
    std::string_view rest = target.substr(sep + 3);
    size_t end = rest.find_first_of("/?");
    authority = rest.substr(0, end);
    // userinfo ('@') is deprecated for http(s) and a known spoofing vector; valid_authority
    // rejects it like any other character outside reg-name.
    if (!valid_authority(authority, false)) return kBadRequest;
    if (end == std::string_view::npos) {
        out.path = "/";
        out.query = {};
        return 0;
    }
    rest.remove_prefix(end);
    if (rest[0] == '?') {
        out.path = "/";
        out.query = rest.substr(1);
        return 0;
    }
    split_query(rest, out);
    return 0;
}

int parse_request_line(std::string_view line, RequestHead& out, std::string_view& authority) {
    size_t sp1 = line.find(' ');
    if (sp1 == std::string_view::npos) return kBadRequest;
    std::string_view method = line.substr(0, sp1);
    if (!is_token(method)) return kBadRequest;
    std::string_view rest = line.substr(sp1 + 1);
    size_t sp2 = rest.find(' ');
    if (sp2 == std::string_view::npos || sp2 == 0) return kBadRequest;
    std::string_view target = rest.substr(0, sp2);
    std::string_view version = rest.substr(sp2 + 1);

    out.method_name = method;
    out.method = lookup_method(method);
    out.target = target;
    if (int rc = parse_version(version, out.version_minor); rc != 0) return rc;
    return parse_target(target, out, authority);
}

struct TransferCodings {
    int chunked = 0;            // how many times "chunked" appeared
    bool last_chunked = false;  // the last coding seen is chunked
    bool other = false;         // a well-formed coding other than chunked appeared
    bool malformed = false;
};

// transfer-coding = token *( OWS ";" OWS transfer-parameter ). Empty elements (including an
// empty field value) are treated as obfuscation: 400.
void parse_transfer_encoding(std::string_view value, TransferCodings& tc) {
    for_each_element(value, [&](std::string_view e) {
        size_t semi = e.find(';');
        std::string_view name = trim_ows(e.substr(0, semi));
        if (!is_token(name)) {
            tc.malformed = true;
            return false;
        }
        if (iequals(name, "chunked")) {
            // chunked takes no parameters: "chunked;q=1" is obfuscation
            if (semi != std::string_view::npos) tc.malformed = true;
            ++tc.chunked;
            tc.last_chunked = true;
        } else {
            tc.other = true;
            tc.last_chunked = false;
        }
        return !tc.malformed;
    });
}

}  // namespace

const Header* RequestHead::find(std::string_view name) const {
    for (const Header& h : headers) {
        if (iequals(h.name, name)) return &h;
    }
    return nullptr;
}

const char* method_name(Method m) {
    switch (m) {
        case Method::Get:
            return "GET";
        case Method::Head:
            return "HEAD";
        case Method::Post:
            return "POST";
        case Method::Put:
            return "PUT";
        case Method::Delete:
            return "DELETE";
        case Method::Options:
            return "OPTIONS";
        case Method::Patch:
            return "PATCH";
        case Method::Trace:
            return "TRACE";
        case Method::Connect:
            return "CONNECT";
        case Method::Other:
            return "OTHER";
    }
    return "OTHER";
}

HeadScanner::HeadScanner(const HeadLimits& limits) : limits_(limits) {}

void HeadScanner::reset() {
    pos_ = 0;
    line_start_ = 0;
    headers_ = 0;
    length_ = 0;
    error_ = 0;
    phase_ = Phase::Leading;
    cr_ = false;
    status_ = Status::NeedMore;
}

HeadScanner::Status HeadScanner::fail(int status) {
    error_ = status;
    status_ = Status::Error;
    return status_;
}

HeadScanner::Status HeadScanner::scan(std::string_view buffered) {
    if (status_ != Status::NeedMore) return status_;
    const size_t n = buffered.size();
    for (; pos_ < n; ++pos_) {
        const unsigned char c = static_cast<unsigned char>(buffered[pos_]);
        if (pos_ >= limits_.max_head) {
            // The byte at pos_ would make the head longer than max_head. A request line that is
            // too long on its own is still a 414.
            if (phase_ == Phase::RequestLine && !cr_ && pos_ - line_start_ >= limits_.max_line) {
                return fail(kUriTooLong);
            }
            return fail(kHeaderTooLarge);
        }
        if (cr_) {
            if (c != '\n') return fail(kBadRequest);  // bare CR
            cr_ = false;
            const size_t line_len = pos_ - 1 - line_start_;
            line_start_ = pos_ + 1;
            if (phase_ == Phase::RequestLine) {
                phase_ = Phase::Headers;
            } else if (phase_ == Phase::Headers && line_len == 0) {
                ++pos_;
                length_ = pos_;
                status_ = Status::Complete;
                return status_;
            }
            continue;  // Leading: an empty line before the request line is skipped
        }
        if (c == '\r') {
            cr_ = true;
            continue;
        }
        if (c == '\n') return fail(kBadRequest);  // bare LF
        if (phase_ == Phase::Leading) phase_ = Phase::RequestLine;
        if (pos_ - line_start_ >= limits_.max_line) {
            return fail(phase_ == Phase::RequestLine ? kUriTooLong : kHeaderTooLarge);
        }
        if (phase_ == Phase::RequestLine) {
            // SP-separated; no HTAB, no CTL, no DEL, no non-ASCII anywhere on the request line
            if (c < 0x20 || c >= 0x7F) return fail(kBadRequest);
        } else {
            if (pos_ == line_start_) {
                if (c == ' ' || c == '\t') return fail(kBadRequest);  // obs-fold
                if (++headers_ > limits_.max_headers) return fail(kHeaderTooLarge);
            }
            if ((c < 0x20 && c != '\t') || c == 0x7F) return fail(kBadRequest);
        }
    }
    return status_;
}

int parse_request_head(std::string_view head, const HeadLimits& limits, RequestHead& out) {
    out.method = Method::Other;
    out.method_name = {};
    out.target = {};
    out.path = {};
    out.query = {};
    out.host = {};
    out.version_minor = 1;
    out.headers.clear();
    out.framing = BodyFraming::None;
    out.content_length = 0;
    out.keep_alive = true;
    out.expect_continue = false;
    out.upgrade = false;

    // Re-run the scanner so the byte-level rules (CRLF, CTL, obs-fold, limits) hold even when the
    // caller hands us something the scanner did not delimit.
    HeadScanner scanner(limits);
    switch (scanner.scan(head)) {
        case HeadScanner::Status::Error:
            return scanner.error_status();
        case HeadScanner::Status::NeedMore:
            return kBadRequest;
        case HeadScanner::Status::Complete:
            if (scanner.head_length() != head.size()) return kBadRequest;
            break;
    }

    size_t pos = 0;
    while (head.substr(pos, 2) == "\r\n") pos += 2;
    size_t eol = head.find("\r\n", pos);
    std::string_view authority;  // from an absolute-form or authority-form target, else empty
    if (int rc = parse_request_line(head.substr(pos, eol - pos), out, authority); rc != 0) {
        return rc;
    }
    pos = eol + 2;

    int host_count = 0;
    std::string_view host_value;
    bool cl_seen = false;
    bool te_seen = false;
    bool conn_close = false;
    bool conn_keep_alive = false;
    bool conn_upgrade = false;
    bool has_upgrade = false;
    TransferCodings tc;

    while (true) {
        eol = head.find("\r\n", pos);
        if (eol == pos) break;  // the empty line ending the head
        std::string_view line = head.substr(pos, eol - pos);
        pos = eol + 2;

        size_t colon = line.find(':');
        if (colon == std::string_view::npos) return kBadRequest;
        std::string_view name = line.substr(0, colon);
        // also rejects whitespace between the name and the colon (RFC 9112 5.1)
        if (!is_token(name)) return kBadRequest;
        std::string_view value = trim_ows(line.substr(colon + 1));
        out.headers.push_back(Header{name, value});

        switch (lower(name[0])) {
            case 'h':
                if (iequals(name, "host")) {
                    ++host_count;
                    host_value = value;
                }
                break;
            case 'c':
                if (iequals(name, "content-length")) {
                    if (!parse_content_length(value, cl_seen, out.content_length)) {
                        return kBadRequest;
                    }
                } else if (iequals(name, "connection")) {
                    for_each_element(value, [&](std::string_view token) {
                        if (iequals(token, "close")) conn_close = true;
                        if (iequals(token, "keep-alive")) conn_keep_alive = true;
                        if (iequals(token, "upgrade")) conn_upgrade = true;
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
            case 'e':
                if (iequals(name, "expect") && iequals(value, "100-continue")) {
                    out.expect_continue = true;
                }
                break;
            case 'u':
                if (iequals(name, "upgrade")) has_upgrade = true;
                break;
            default:
                break;
        }
    }

    // Host (RFC 9112 3.2): exactly one for HTTP/1.1, at most one otherwise, always well-formed.
    if (host_count > 1) return kBadRequest;
    if (host_count == 1 && !valid_authority(host_value, false)) return kBadRequest;
    if (host_count == 0 && out.version_minor >= 1) return kBadRequest;
    out.host = authority.empty() ? host_value : authority;

    // Body framing (RFC 9112 6.1-6.3). A gateway must never guess between two framings.
    if (te_seen) {
        if (out.version_minor == 0) return kBadRequest;
        if (cl_seen) return kBadRequest;
        if (tc.malformed || tc.chunked > 1) return kBadRequest;
        if (tc.chunked == 1 && !tc.last_chunked) return kBadRequest;  // chunked must be final
        if (tc.other) return kNotImplemented;
        out.framing = BodyFraming::Chunked;
    } else if (cl_seen) {
        out.framing = BodyFraming::ContentLength;
    }

    out.keep_alive = out.version_minor >= 1 ? !conn_close : (conn_keep_alive && !conn_close);
    out.upgrade = conn_upgrade && has_upgrade;
    return 0;
}

}  // namespace tollgate::http
