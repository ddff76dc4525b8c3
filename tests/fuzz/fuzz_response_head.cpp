// libFuzzer target for ResponseHeadScanner + parse_response_head.
//
// Input: byte 0 picks the feeding step (low 6 bits + 1), tight limits (bit 7) and the request
// method the response answers (bit 6: HEAD); the rest is the upstream receive stream. Checks
// that one-shot, byte-at-a-time and stepped scanning agree, that every view the parser produces
// points into the head, that the framing is consistent with the status and headers, and that
// heads after the first (1xx then final) scan and parse the same way after reset().

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/http/response_head.hpp"

using namespace tollgate::http;

namespace {

using Scan = ResponseHeadScanner::Status;

void check(bool ok) {
    if (!ok) __builtin_trap();
}

bool inside(std::string_view part, std::string_view whole) {
    if (part.empty()) return true;
    return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

// Scans `in` with three feeding patterns and checks they agree. Returns the one-shot scanner.
ResponseHeadScanner scan_all_ways(std::string_view in, const ResponseLimits& limits, size_t step) {
    ResponseHeadScanner whole(limits);
    const Scan a = whole.scan(in);

    ResponseHeadScanner bytes(limits);
    Scan b = Scan::NeedMore;
    for (size_t n = 1; n <= in.size() && b == Scan::NeedMore; ++n) b = bytes.scan(in.substr(0, n));
    if (in.empty()) b = bytes.scan(in);

    ResponseHeadScanner pieces(limits);
    Scan c = Scan::NeedMore;
    size_t fed = 0;
    do {
        fed = std::min(in.size(), fed + step);
        c = pieces.scan(in.substr(0, fed));
    } while (c == Scan::NeedMore && fed < in.size());

    check(a == b && a == c);
    check(whole.head_length() == bytes.head_length());
    check(whole.head_length() == pieces.head_length());
    // sticky
    check(whole.scan(in) == a);
    if (a != Scan::Complete) check(whole.head_length() == 0);
    return whole;
}

// Checks the invariants of a successful parse of `head` answering `method`.
void check_result(std::string_view head, const ResponseLimits& limits, Method method,
                  const ResponseHead& out) {
    check(out.status >= 100 && out.status <= 599);
    check(out.version_minor == 0 || out.version_minor == 1);
    check(head.substr(0, 7) == "HTTP/1.");
    check(inside(out.reason, head));
    check(out.headers.size() <= limits.max_headers);
    for (const Header& h : out.headers) {
        check(!h.name.empty() && inside(h.name, head) && inside(h.value, head));
        check(h.name.find_first_of(" \t:\r\n") == std::string_view::npos);
        check(h.value.empty() || (h.value.front() != ' ' && h.value.front() != '\t' &&
                                  h.value.back() != ' ' && h.value.back() != '\t'));
    }

    const int s = out.status;
    const bool has_cl = out.find("content-length") != nullptr;
    const bool has_te = out.find("transfer-encoding") != nullptr;
    check(!(has_cl && has_te));  // never ambiguous
    if (has_te) check(out.version_minor == 1 && s >= 200 && s != 204);
    if (s < 200 || s == 204 || s == 304 || method == Method::Head) {
        check(out.framing == ResponseFraming::None);
    }
    switch (out.framing) {
        case ResponseFraming::None:
            check(s < 200 || s == 204 || s == 304 || method == Method::Head || out.tunnel);
            break;
        case ResponseFraming::ContentLength:
            check(has_cl);
            break;
        case ResponseFraming::Chunked:
            check(has_te);
            break;
        case ResponseFraming::UntilClose:
            check(!has_cl && !has_te && !out.keep_alive);
            break;
    }
    if (out.framing != ResponseFraming::ContentLength) check(out.content_length == 0);
    check(out.upgrade == (s == 101));
    if (out.upgrade) {
        check(out.find("upgrade") != nullptr && !out.keep_alive && out.version_minor == 1);
    }
    check(out.tunnel == (method == Method::Connect && s >= 200 && s < 300));
    if (out.tunnel) check(!out.keep_alive);
    check(out.informational() == (s < 200 && s != 101));
}

// Parses `head` answering GET, HEAD and CONNECT; validity must not depend on the method.
// Returns whether it parsed.
bool parse_all_ways(std::string_view head, const ResponseLimits& limits) {
    ResponseHead get;
    ResponseHead head_out;
    ResponseHead connect;
    const bool a = parse_response_head(head, limits, false, get);
    const bool b = parse_response_head(head, limits, true, head_out);
    const bool c = parse_response_head(head, limits, Method::Connect, connect);
    check(a == b && a == c);
    if (!a) return false;
    check_result(head, limits, Method::Get, get);
    check_result(head, limits, Method::Head, head_out);
    check_result(head, limits, Method::Connect, connect);
    check(get.status == head_out.status && get.status == connect.status);
    check(get.headers.size() == head_out.headers.size());
    // a HEAD answer never closes just because the length is unknown
    if (get.framing == ResponseFraming::UntilClose) {
        check(head_out.framing == ResponseFraming::None);
    }
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const uint8_t control = data[0];
    std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);

    ResponseLimits limits;
    if (control & 0x80) {
        limits.max_line = 48;
        limits.max_head = 200;
        limits.max_headers = 4;
    }
    const size_t step = (control & 0x3F) + 1;
    const bool request_was_head = (control & 0x40) != 0;

    // Up to 4 heads in a row (1xx ... final), as the proxy reads them: scan, parse, reset.
    for (int round = 0; round < 4 && !in.empty(); ++round) {
        ResponseHeadScanner scanner = scan_all_ways(in, limits, step);
        if (scanner.scan(in) != Scan::Complete) {
            // The parser must also cope with input the scanner did not delimit, and reject it.
            ResponseHead raw;
            check(!parse_response_head(in, limits, request_was_head, raw));
            break;
        }
        const size_t len = scanner.head_length();
        check(len >= 16 && len <= in.size() && len <= limits.max_head);  // "HTTP/1.1 200\r\n\r\n"
        const std::string_view head = in.substr(0, len);
        check(head.substr(len - 4) == "\r\n\r\n");
        check(head.find("\r\n\r\n") == len - 4);

        // reset() gives the same verdict as a fresh scanner
        scanner.reset();
        check(scanner.head_length() == 0);
        check(scanner.scan(in) == Scan::Complete && scanner.head_length() == len);

        const bool ok = parse_all_ways(head, limits);
        // trailing bytes are never part of a head
        if (len < in.size()) {
            ResponseHead extra;
            check(!parse_response_head(in.substr(0, len + 1), limits, request_was_head, extra));
        }
        if (!ok) break;
        ResponseHead out;
        check(parse_response_head(head, limits, request_was_head, out));
        if (!out.informational()) break;  // the body (or a new protocol) follows
        in.remove_prefix(len);
    }
    return 0;
}
