// The access_log module's format compiler and value escapers, kept free of request and worker
// state so they can be unit tested alone (tests/unit/server/test_log_format.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/variables.hpp"

namespace tollgate::access_log {

// log_format's escape= parameter.
enum class Escape : uint8_t { Default, Json, None };

// "default", "json" or "none".
std::optional<Escape> parse_escape(std::string_view name);

// One piece of a compiled format: literal text, or a variable whose value is escaped.
struct FormatOp {
    bool variable = false;
    std::string literal;
    VariableRef ref;
};

struct CompiledFormat {
    std::string name;
    Escape escape = Escape::Default;
    std::vector<FormatOp> ops;
    size_t literal_size = 0;  // sum of the literal pieces, to size the line buffer
};

// Compiles `text` ("$remote_addr - [$time_local]", "${name}" allowed) against `registry` into
// `out` (appending; adjacent literals are merged). Returns an empty string on success, else the
// error message without location ('unknown "x" variable', ...).
std::string compile_format(std::string_view text, const VariableRegistry& registry,
                           CompiledFormat& out);

// How a variable that was not found is written: "-" (default, none) or nothing (json).
inline std::string_view not_found_text(Escape e) {
    return e == Escape::Json ? "" : "-";
}

// Appends `v` to `out` escaped as `e`:
//   Default: '"', '\\' and bytes < 0x20 or >= 0x7f become \xHH (uppercase hex), as nginx.
//   Json:    JSON string escaping: \" \\ \n \r \t \b \f, other bytes < 0x20 as \u00HH;
//            bytes >= 0x80 pass through.
//   None:    as is.
// `S` is any string type with append(const char*, size_t) and push_back(char).
template <class S>
void append_escaped(S& out, std::string_view v, Escape e) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    if (e == Escape::None) {
        out.append(v.data(), v.size());
        return;
    }
    size_t start = 0;
    for (size_t i = 0; i < v.size(); ++i) {
        auto c = static_cast<unsigned char>(v[i]);
        bool plain;
        if (e == Escape::Default) {
            plain = c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
        } else {
            plain = c >= 0x20 && c != '"' && c != '\\';
        }
        if (plain) continue;
        out.append(v.data() + start, i - start);
        start = i + 1;
        if (e == Escape::Default) {
            char esc[4] = {'\\', 'x', kHex[c >> 4], kHex[c & 0xf]};
            out.append(esc, 4);
            continue;
        }
        char short_form = 0;
        switch (c) {
            case '"':
                short_form = '"';
                break;
            case '\\':
                short_form = '\\';
                break;
            case '\n':
                short_form = 'n';
                break;
            case '\r':
                short_form = 'r';
                break;
            case '\t':
                short_form = 't';
                break;
            case '\b':
                short_form = 'b';
                break;
            case '\f':
                short_form = 'f';
                break;
            default:
                break;
        }
        if (short_form != 0) {
            char esc[2] = {'\\', short_form};
            out.append(esc, 2);
        } else {
            char esc[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xf]};
            out.append(esc, 6);
        }
    }
    out.append(v.data() + start, v.size() - start);
}

}  // namespace tollgate::access_log
