// libFuzzer target for HeadScanner + parse_request_head.
//
// Input: byte 0 picks the feeding step (low 7 bits + 1) and tight limits (high bit); the rest is
// the receive stream. Checks that incremental and one-shot scanning agree, that the parser only
// returns documented statuses, and that every view it produces points into the head.

#include <cstddef>
#include <cstdint>
#include <memory_resource>
#include <string>
#include <string_view>

#include "core/http/request_head.hpp"
#include "core/http/uri.hpp"

using namespace tollgate::http;

namespace {

void check(bool ok) {
    if (!ok) __builtin_trap();
}

bool inside(std::string_view part, std::string_view whole) {
    if (part.empty()) return true;
    return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

bool documented(int rc) {
    return rc == 0 || rc == 400 || rc == 414 || rc == 431 || rc == 501 || rc == 505;
}

void check_parse(std::string_view head, const HeadLimits& limits) {
    RequestHead out;
    const int rc = parse_request_head(head, limits, out);
    check(documented(rc));
    if (rc != 0) return;
    check(!out.method_name.empty() && inside(out.method_name, head));
    check(!out.target.empty() && inside(out.target, head));
    check(out.path == "/" || inside(out.path, head));
    check(inside(out.query, head));
    check(inside(out.host, head));
    check(out.version_minor == 0 || out.version_minor == 1);
    check(out.headers.size() <= limits.max_headers);
    for (const Header& h : out.headers) {
        check(!h.name.empty() && inside(h.name, head) && inside(h.value, head));
    }
    if (out.version_minor == 1) check(out.find("host") != nullptr);
    if (out.framing == BodyFraming::Chunked) {
        check(out.version_minor == 1 && out.find("content-length") == nullptr);
    }
    if (out.framing != BodyFraming::ContentLength) check(out.content_length == 0);
    if (!out.path.empty() && out.path[0] == '/') {
        std::pmr::string normalized;
        if (normalize_path(out.path, normalized)) {
            check(!normalized.empty() && normalized[0] == '/');
            check(normalized.find("//") == std::pmr::string::npos);
            check(normalized.find('\0') == std::pmr::string::npos);
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const uint8_t control = data[0];
    const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);

    HeadLimits limits;
    if (control & 0x80) {
        limits.max_line = 48;
        limits.max_head = 160;
        limits.max_headers = 4;
    }

    HeadScanner whole(limits);
    const HeadScanner::Status a = whole.scan(in);

    HeadScanner pieces(limits);
    const size_t step = (control & 0x7F) + 1;
    HeadScanner::Status b = HeadScanner::Status::NeedMore;
    size_t fed = 0;
    while (b == HeadScanner::Status::NeedMore && fed < in.size()) {
        fed = std::min(in.size(), fed + step);
        b = pieces.scan(in.substr(0, fed));
    }
    check(a == b);
    check(whole.error_status() == pieces.error_status());
    check(whole.head_length() == pieces.head_length());

    if (a == HeadScanner::Status::Error) {
        const int e = whole.error_status();
        check(e == 400 || e == 414 || e == 431);
    } else if (a == HeadScanner::Status::Complete) {
        const size_t len = whole.head_length();
        check(len >= 4 && len <= in.size() && len <= limits.max_head);
        const std::string_view head = in.substr(0, len);
        check(head.substr(len - 4) == "\r\n\r\n");
        check_parse(head, limits);
    } else {
        check(whole.head_length() == 0 && whole.error_status() == 0);
    }

    // The parser must also cope with input the scanner did not delimit.
    RequestHead raw_out;
    check(documented(parse_request_head(in, limits, raw_out)));
    return 0;
}
