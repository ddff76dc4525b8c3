#include "core/http/uri.hpp"

namespace tollgate::http {

namespace {

// Returns the value of a hex digit, or -1.
constexpr int hex_value(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

// Appends the percent-decoded `raw` to `out`. Returns false on a bad escape or a NUL.
bool percent_decode(std::string_view raw, std::pmr::string& out) {
    for (size_t i = 0; i < raw.size(); ++i) {
        char c = raw[i];
        if (c == '%') {
            if (i + 2 >= raw.size()) return false;
            const int hi = hex_value(raw[i + 1]);
            const int lo = hex_value(raw[i + 2]);
            if (hi < 0 || lo < 0) return false;
            c = static_cast<char>(hi * 16 + lo);
            i += 2;
        }
        if (c == '\0') return false;
        out.push_back(c);
    }
    return true;
}

}  // namespace

bool normalize_path(std::string_view raw_path, std::pmr::string& out) {
    out.clear();
    if (raw_path.empty() || raw_path[0] != '/') return false;

    // Decode first so that encoded dots and slashes take part in normalization exactly like
    // literal ones (nginx semantics; "/%2e%2e/" is "/../").
    std::pmr::string decoded(out.get_allocator());
    decoded.reserve(raw_path.size());
    if (!percent_decode(raw_path, decoded)) return false;

    // `out` always ends with '/' between segments; segments are appended after it.
    out.reserve(decoded.size());
    out.push_back('/');
    const std::string_view d(decoded);
    size_t i = 0;
    while (i < d.size()) {
        while (i < d.size() && d[i] == '/') ++i;  // merge_slashes
        if (i == d.size()) break;
        size_t end = d.find('/', i);
        if (end == std::string_view::npos) end = d.size();
        const std::string_view segment = d.substr(i, end - i);
        const bool slash_follows = end < d.size();
        i = end;

        if (segment == ".") continue;  // "/a/." is "/a/"
        if (segment == "..") {
            if (out.size() == 1) return false;  // above the root
            out.pop_back();                     // the '/' after the last segment
            out.resize(out.rfind('/') + 1);     // drop that segment, keep its leading '/'
            continue;
        }
        out.append(segment);
        if (slash_follows) out.push_back('/');
    }
    return true;
}

}  // namespace tollgate::http
