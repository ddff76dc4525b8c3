#include "core/redis_url.hpp"

#include <charconv>
#include <climits>

namespace tollgate {

namespace {

bool iequals_prefix(std::string_view text, std::string_view prefix) {
    if (text.size() < prefix.size()) return false;
    for (size_t i = 0; i < prefix.size(); ++i) {
        char c = text[i];
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        if (c != prefix[i]) return false;
    }
    return true;
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// %HH-decodes `in` into `out`; refuses a broken escape and a decoded NUL.
bool percent_decode(std::string_view in, std::string& out) {
    out.clear();
    for (size_t i = 0; i < in.size(); ++i) {
        if (in[i] != '%') {
            out.push_back(in[i]);
            continue;
        }
        if (i + 2 >= in.size()) return false;
        const int hi = hex_value(in[i + 1]);
        const int lo = hex_value(in[i + 2]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return false;
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
    }
    return true;
}

void percent_encode(std::string_view in, std::string& out) {
    static const char kHex[] = "0123456789ABCDEF";
    for (const char ch : in) {
        const auto c = static_cast<unsigned char>(ch);
        const bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
                                c == '~';
        if (unreserved) {
            out.push_back(ch);
        } else {
            out.push_back('%');
            out.push_back(kHex[c >> 4]);
            out.push_back(kHex[c & 15]);
        }
    }
}

// Parses a decimal in [lo, hi]; only digits, no sign, no leading "+".
bool parse_number(std::string_view s, long long lo, long long hi, long long& out) {
    if (s.empty() || s.size() > 10) return false;
    for (const char c : s) {
        if (c < '0' || c > '9') return false;
    }
    long long v = 0;
    std::from_chars(s.data(), s.data() + s.size(), v);
    if (v < lo || v > hi) return false;
    out = v;
    return true;
}

bool has_bad_byte(std::string_view s) {
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c <= 0x20 || c == 0x7f) return true;
    }
    return false;
}

bool is_host_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_';
}

bool is_ipv6_char(char c) {
    return hex_value(c) >= 0 || c == ':' || c == '.';
}

bool fail(std::string& error, std::string why) {
    error = std::move(why);
    return false;
}

bool parse_tcp(std::string_view rest, RedisUrl& out, std::string& error) {
    if (rest.find_first_of("?#") != std::string_view::npos) {
        return fail(error, "query strings and fragments are not allowed in a redis:// URL");
    }
    const size_t slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    const std::string_view db = slash == std::string_view::npos ? "" : rest.substr(slash + 1);

    const size_t at = authority.rfind('@');
    if (at != std::string_view::npos) {
        const std::string_view userinfo = authority.substr(0, at);
        authority = authority.substr(at + 1);
        const size_t colon = userinfo.find(':');
        if (colon == std::string_view::npos) {
            return fail(error, "credentials must read [USER]:PASSWORD@");
        }
        if (!percent_decode(userinfo.substr(0, colon), out.username) ||
            !percent_decode(userinfo.substr(colon + 1), out.password)) {
            return fail(error, "invalid percent-encoding in the credentials");
        }
        out.has_password = true;
    }

    std::string_view port;
    bool has_port = false;
    if (!authority.empty() && authority.front() == '[') {
        const size_t close = authority.find(']');
        if (close == std::string_view::npos) return fail(error, "unclosed \"[\" in the host");
        const std::string_view host = authority.substr(1, close - 1);
        if (host.empty()) return fail(error, "empty host");
        for (const char c : host) {
            if (!is_ipv6_char(c)) return fail(error, "invalid IPv6 address");
        }
        out.host.assign(host);
        const std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') return fail(error, "unexpected text after \"]\"");
            port = after.substr(1);
            has_port = true;
        }
    } else {
        const size_t colon = authority.find(':');
        const std::string_view host = authority.substr(0, colon);
        if (host.empty()) return fail(error, "empty host");
        for (const char c : host) {
            if (!is_host_char(c)) return fail(error, "invalid character in the host");
        }
        out.host.assign(host);
        if (colon != std::string_view::npos) {
            port = authority.substr(colon + 1);
            has_port = true;
        }
    }
    if (has_port) {
        long long p = 0;
        if (!parse_number(port, 1, 65535, p)) return fail(error, "invalid port");
        out.port = static_cast<uint16_t>(p);
    }
    if (!db.empty()) {
        long long n = 0;
        if (!parse_number(db, 0, INT_MAX, n)) return fail(error, "invalid database number");
        out.db = static_cast<int>(n);
    }
    return true;
}

bool parse_unix(std::string_view rest, RedisUrl& out, std::string& error) {
    const size_t q = rest.find('?');
    const std::string_view path = rest.substr(0, q);
    if (path.size() < 2 || path.front() != '/') {
        return fail(error, "a unix: URL needs an absolute socket path");
    }
    out.path.assign(path);
    if (q == std::string_view::npos) return true;
    std::string_view query = rest.substr(q + 1);
    bool seen_db = false, seen_user = false;
    while (true) {
        const size_t amp = query.find('&');
        const std::string_view pair = query.substr(0, amp);
        const size_t eq = pair.find('=');
        if (eq == std::string_view::npos)
            return fail(error, "query parameters must read NAME=VALUE");
        const std::string_view name = pair.substr(0, eq);
        const std::string_view value = pair.substr(eq + 1);
        if (name == "db") {
            long long n = 0;
            if (seen_db || !parse_number(value, 0, INT_MAX, n)) {
                return fail(error, "invalid database number");
            }
            out.db = static_cast<int>(n);
            seen_db = true;
        } else if (name == "password") {
            if (out.has_password || !percent_decode(value, out.password)) {
                return fail(error, "invalid password parameter");
            }
            out.has_password = true;
        } else if (name == "username") {
            if (seen_user || !percent_decode(value, out.username)) {
                return fail(error, "invalid username parameter");
            }
            seen_user = true;
        } else {
            return fail(error, "unknown parameter \"" + std::string(name) + "\"");
        }
        if (amp == std::string_view::npos) break;
        query = query.substr(amp + 1);
    }
    return true;
}

}  // namespace

bool parse_redis_url(std::string_view text, RedisUrl& out, std::string& error) {
    out = RedisUrl{};
    error.clear();
    if (has_bad_byte(text)) return fail(error, "control characters or spaces in the URL");
    if (iequals_prefix(text, "redis://")) {
        out.kind = RedisUrl::Kind::Tcp;
        return parse_tcp(text.substr(8), out, error);
    }
    if (iequals_prefix(text, "unix:")) {
        out.kind = RedisUrl::Kind::Unix;
        return parse_unix(text.substr(5), out, error);
    }
    if (iequals_prefix(text, "rediss://")) {
        return fail(error, "rediss:// (TLS) is not supported; use redis:// or unix:");
    }
    return fail(error, "the URL must start with redis:// or unix:");
}

std::string RedisUrl::to_string(bool redact) const {
    std::string s;
    if (kind == Kind::Unix) {
        s = "unix:" + path;
        char sep = '?';
        if (db != 0) {
            s += sep;
            s += "db=" + std::to_string(db);
            sep = '&';
        }
        if (has_password) {
            s += sep;
            s += "password=";
            if (redact) {
                s += "***";
            } else {
                percent_encode(password, s);
            }
            sep = '&';
        }
        if (!username.empty()) {
            s += sep;
            s += "username=";
            percent_encode(username, s);
        }
        return s;
    }
    s = "redis://";
    if (has_password) {
        percent_encode(username, s);
        s += ':';
        if (redact) {
            s += "***";
        } else {
            percent_encode(password, s);
        }
        s += '@';
    }
    if (host.find(':') != std::string::npos) {
        s += '[' + host + ']';
    } else {
        s += host;
    }
    s += ':' + std::to_string(port);
    if (db != 0) s += '/' + std::to_string(db);
    return s;
}

}  // namespace tollgate
