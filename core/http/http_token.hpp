#pragma once

// Character classes and small token helpers shared by the HTTP/1.1 head codecs (RFC 9110 5.6,
// RFC 9112 5). Header-only, constexpr where possible, never allocates. Kept in a nested namespace
// so that files with their own file-local helpers of the same name (chunked.cpp) stay unambiguous.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string_view>

namespace tollgate::http::token {

// is_tchar: `c` is a byte. Returns true when it is a tchar (RFC 9110 5.6.2):
// "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~"
// / DIGIT / ALPHA.
constexpr bool is_tchar(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    switch (c) {
        case '!':
        case '#':
        case '$':
        case '%':
        case '&':
        case '\'':
        case '*':
        case '+':
        case '-':
        case '.':
        case '^':
        case '_':
        case '`':
        case '|':
        case '~':
            return true;
        default:
            return false;
    }
}

// is_digit: `c` is a byte. Returns true for ASCII '0'..'9'.
constexpr bool is_digit(unsigned char c) {
    return c >= '0' && c <= '9';
}

// is_ows: `c` is a byte. Returns true for SP and HTAB (OWS/BWS, RFC 9110 5.6.3).
constexpr bool is_ows(char c) {
    return c == ' ' || c == '\t';
}

// is_field_byte: `c` is a byte of a field line (name, colon or value). Returns false for the
// control bytes no field line may contain: CTLs other than HTAB, and DEL. obs-text is allowed.
constexpr bool is_field_byte(unsigned char c) {
    return !((c < 0x20 && c != '\t') || c == 0x7F);
}

// lower: `c` is a byte. Returns its ASCII lower-case form (other bytes unchanged).
constexpr char lower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

// iequals: `a` and `b` are strings. Returns true when they are equal ignoring ASCII case.
constexpr bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        if (lower(a[i]) != lower(b[i])) return false;
    }
    return true;
}

// trim_ows: `s` is a string. Returns `s` without leading and trailing SP / HTAB.
constexpr std::string_view trim_ows(std::string_view s) {
    while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
    return s;
}

// is_token: `s` is a string. Returns true when it is a non-empty sequence of tchars.
constexpr bool is_token(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s) {
        if (!is_tchar(static_cast<unsigned char>(c))) return false;
    }
    return true;
}

// for_each_element: `value` is a comma-separated list field value; `fn` is called as
// fn(std::string_view element) for each element, OWS trimmed (empty elements included) and
// returns bool. Returns false as soon as fn does, true once every element was visited.
template <typename Fn>
constexpr bool for_each_element(std::string_view value, Fn&& fn) {
    while (true) {
        size_t comma = value.find(',');
        if (!fn(trim_ows(value.substr(0, comma)))) return false;
        if (comma == std::string_view::npos) return true;
        value.remove_prefix(comma + 1);
    }
}

// parse_content_length: `value` is one Content-Length field value (1*DIGIT, possibly repeated as
// a list); `seen` tells whether an earlier value was already accepted and is set on success;
// `result` holds that earlier value and receives this one. Returns false for an empty element, a
// non-digit, a value above 2^63-1, or a value different from an earlier one.
constexpr bool parse_content_length(std::string_view value, bool& seen, uint64_t& result) {
    return for_each_element(value, [&](std::string_view e) {
        if (e.empty()) return false;
        uint64_t v = 0;
        constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
        for (char ch : e) {
            unsigned char c = static_cast<unsigned char>(ch);
            if (!is_digit(c)) return false;
            uint64_t d = c - '0';
            if (v > (kMax - d) / 10) return false;
            v = v * 10 + d;
        }
        if (seen && v != result) return false;
        seen = true;
        result = v;
        return true;
    });
}

}  // namespace tollgate::http::token
