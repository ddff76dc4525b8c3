#include "core/http/response_head.hpp"

#include <gtest/gtest.h>

#include <iterator>
#include <memory_resource>
#include <string>
#include <string_view>

namespace tollgate::http {
namespace {

using namespace std::string_literals;

using Scan = ResponseHeadScanner::Status;

// Runs the scanner over the whole input, then the parser over the head it found. Returns false
// when either rejects (or the head is incomplete); `head_len` receives the scanner's head length.
bool scan_and_parse(std::string_view raw, ResponseHead& out, const ResponseLimits& limits = {},
                    bool request_was_head = false, size_t* head_len = nullptr) {
    ResponseHeadScanner scanner(limits);
    if (scanner.scan(raw) != Scan::Complete) return false;
    if (head_len) *head_len = scanner.head_length();
    return parse_response_head(raw.substr(0, scanner.head_length()), limits, request_was_head, out);
}

bool accepts(std::string_view raw, const ResponseLimits& limits = {}) {
    ResponseHead head;
    return scan_and_parse(raw, head, limits);
}

// Feeds the scanner a growing prefix, one byte more each call, as a slow upstream would.
Scan scan_bytewise(std::string_view raw, ResponseHeadScanner& scanner) {
    Scan st = Scan::NeedMore;
    for (size_t n = 1; n <= raw.size() && st == Scan::NeedMore; ++n) {
        st = scanner.scan(raw.substr(0, n));
    }
    return st;
}

std::string big(size_t n, char c = 'a') {
    return std::string(n, c);
}

std::string many_headers(size_t n) {
    std::string s;
    for (size_t i = 0; i < n; ++i) s += "X-" + std::to_string(i) + ": v\r\n";
    return s;
}

// ---------------------------------------------------------------- invalid / ambiguous table

struct BadCase {
    const char* name;
    std::string raw;
};

class ResponseRejects : public ::testing::TestWithParam<BadCase> {};

TEST_P(ResponseRejects, Invalid) {
    const BadCase& c = GetParam();
    EXPECT_FALSE(accepts(c.raw)) << c.raw;
    // Also rejected when answering HEAD (validation does not depend on the method).
    ResponseHead h;
    EXPECT_FALSE(scan_and_parse(c.raw, h, {}, true)) << c.raw;
    // The parser alone, on the whole input, rejects it too.
    EXPECT_FALSE(parse_response_head(c.raw, {}, false, h)) << c.raw;
    // The same scanner verdict when the bytes trickle in one at a time.
    ResponseHeadScanner one_shot(ResponseLimits{});
    ResponseHeadScanner trickle(ResponseLimits{});
    EXPECT_EQ(one_shot.scan(c.raw), scan_bytewise(c.raw, trickle));
    EXPECT_EQ(one_shot.head_length(), trickle.head_length());
}

const BadCase kBadCases[] = {
    // --- status line: version
    {"Http09NoStatusLine", "<html>hello</html>\r\n\r\n"},
    {"EmptyStatusLine", "\r\nContent-Length: 0\r\n\r\n"},
    {"LeadingCrlf", "\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
    {"LeadingSpace", " HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
    {"MissingVersion", "200 OK\r\nContent-Length: 0\r\n\r\n"},
    {"Http2", "HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n"},
    {"Http20", "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"},
    {"Http09", "HTTP/0.9 200 OK\r\nContent-Length: 0\r\n\r\n"},
    {"VersionLowercase", "http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
    {"VersionMissingMinor", "HTTP/1 200 OK\r\nContent-Length: 0\r\n\r\n"},
    {"VersionTwoDigitMinor", "HTTP/1.10 200 OK\r\nContent-Length: 0\r\n\r\n"},
    {"VersionMinorNotDigit", "HTTP/1.x 200 OK\r\nContent-Length: 0\r\n\r\n"},
    {"VersionOnly", "HTTP/1.1\r\nContent-Length: 0\r\n\r\n"},
    // --- status line: status code
    {"Status000", "HTTP/1.1 000 OK\r\nContent-Length: 0\r\n\r\n"},
    {"Status099", "HTTP/1.1 099 OK\r\nContent-Length: 0\r\n\r\n"},
    {"Status600", "HTTP/1.1 600 OK\r\nContent-Length: 0\r\n\r\n"},
    {"Status999", "HTTP/1.1 999 OK\r\nContent-Length: 0\r\n\r\n"},
    {"Status1000", "HTTP/1.1 1000 OK\r\nContent-Length: 0\r\n\r\n"},
    {"Status1000NoReason", "HTTP/1.1 1000\r\nContent-Length: 0\r\n\r\n"},
    {"Status2x0", "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n"},
    {"StatusTwoDigits", "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n"},
    {"StatusTwoDigitsNoReason", "HTTP/1.1 20\r\nContent-Length: 0\r\n\r\n"},
    {"StatusMissing", "HTTP/1.1 \r\nContent-Length: 0\r\n\r\n"},
    {"StatusSigned", "HTTP/1.1 +20 OK\r\nContent-Length: 0\r\n\r\n"},
    {"DoubleSpaceBeforeStatus", "HTTP/1.1  200 OK\r\nContent-Length: 0\r\n\r\n"},
    {"TabBeforeStatus", "HTTP/1.1\t200 OK\r\nContent-Length: 0\r\n\r\n"},
    {"NoSpaceBeforeReason", "HTTP/1.1 200OK\r\nContent-Length: 0\r\n\r\n"},
    {"TabBeforeReason", "HTTP/1.1 200\tOK\r\nContent-Length: 0\r\n\r\n"},
    // --- status line: reason phrase bytes
    {"NulInReason", "HTTP/1.1 200 O\0K\r\nContent-Length: 0\r\n\r\n"s},
    {"BareCrInReason", "HTTP/1.1 200 O\rK\r\nContent-Length: 0\r\n\r\n"},
    {"BareLfInReason", "HTTP/1.1 200 O\nK\r\nContent-Length: 0\r\n\r\n"},
    {"DelInReason", "HTTP/1.1 200 O\x7fK\r\nContent-Length: 0\r\n\r\n"},
    {"EscInReason", "HTTP/1.1 200 O\x1bK\r\nContent-Length: 0\r\n\r\n"},
    // --- line terminators and control bytes in header lines
    {"BareLfAfterStatusLine", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"},
    {"BareLfAfterHeader", "HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n"},
    {"BareLfTerminator", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n"},
    {"BareLfOnly", "HTTP/1.1 200 OK\n\n"},
    {"BareCrInValue", "HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 0\r\n\r\n"},
    {"BareCrTerminator", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\r\n"},
    {"NulInValue", "HTTP/1.1 200 OK\r\nX: a\0b\r\nContent-Length: 0\r\n\r\n"s},
    {"NulInName", "HTTP/1.1 200 OK\r\nX\0: ab\r\nContent-Length: 0\r\n\r\n"s},
    {"VerticalTabInValue", "HTTP/1.1 200 OK\r\nX: a\vb\r\nContent-Length: 0\r\n\r\n"},
    {"DelInValue", "HTTP/1.1 200 OK\r\nX: a\x7f\r\nContent-Length: 0\r\n\r\n"},
    {"EscInName", "HTTP/1.1 200 OK\r\nX\x1b: a\r\nContent-Length: 0\r\n\r\n"},
    // --- header syntax
    {"SpaceBeforeColon", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n"},
    {"TabBeforeColon", "HTTP/1.1 200 OK\r\nX-A\t: b\r\nContent-Length: 0\r\n\r\n"},
    {"ObsFoldSpace", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n"},
    {"ObsFoldTab", "HTTP/1.1 200 OK\r\nX: a\r\n\tb\r\nContent-Length: 0\r\n\r\n"},
    {"WhitespaceBeforeFirstHeader", "HTTP/1.1 200 OK\r\n Content-Length: 0\r\n\r\n"},
    {"MissingColon", "HTTP/1.1 200 OK\r\nNoColon\r\nContent-Length: 0\r\n\r\n"},
    {"EmptyName", "HTTP/1.1 200 OK\r\n: v\r\nContent-Length: 0\r\n\r\n"},
    {"NameWithSlash", "HTTP/1.1 200 OK\r\nX/Y: v\r\nContent-Length: 0\r\n\r\n"},
    {"NameWithObsText", "HTTP/1.1 200 OK\r\nX\xc3\xa9: v\r\nContent-Length: 0\r\n\r\n"},
    // --- Content-Length (validated on every status, framing or not)
    {"ClPlusSign", "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n"},
    {"ClMinusSign", "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n"},
    {"ClInnerSpace", "HTTP/1.1 200 OK\r\nContent-Length: 1 0\r\n\r\n"},
    {"ClHex", "HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n"},
    {"ClEmpty", "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n"},
    {"ClOverflow64", "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n"},
    {"ClAbove63Bits", "HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\n"},
    {"ClTwoDifferentFields", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"},
    {"ClDifferentList", "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n"},
    {"ClEmptyListElement", "HTTP/1.1 200 OK\r\nContent-Length: 5,\r\n\r\n"},
    {"ClBogusOn204", "HTTP/1.1 204 No Content\r\nContent-Length: abc\r\n\r\n"},
    {"ClBogusOn304", "HTTP/1.1 304 Not Modified\r\nContent-Length: -1\r\n\r\n"},
    {"ClBogusOn100", "HTTP/1.1 100 Continue\r\nContent-Length: x\r\n\r\n"},
    // --- Transfer-Encoding. Choices: exactly one chunked, last, bare tokens only; chunked not
    // last (RFC: read until close) is rejected too; TE never combines with CL.
    {"TeAndCl", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"},
    {"ClAndTe", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"},
    {"TeAndClOn304",
     "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"},
    {"TeChunkedTwiceInList", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"},
    {"TeChunkedTwiceInFields",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"},
    {"TeChunkedThenGzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"},
    {"TeChunkedThenGzipFields",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n"},
    {"TeGzipOnly", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"},
    {"TeIdentity", "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n"},
    {"TeXchunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n"},
    {"TeChunkedSuffix", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunkedx\r\n\r\n"},
    {"TeChunkedWithParam", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked;x\r\n\r\n"},
    {"TeChunkedWithParamValue", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked; q=1\r\n\r\n"},
    {"TeGzipParamThenChunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip;q=1, chunked\r\n\r\n"},
    {"TeQuoted", "HTTP/1.1 200 OK\r\nTransfer-Encoding: \"chunked\"\r\n\r\n"},
    {"TeEmpty", "HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n\r\n"},
    {"TeEmptyElement", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n"},
    {"TeLeadingEmptyElement", "HTTP/1.1 200 OK\r\nTransfer-Encoding: , chunked\r\n\r\n"},
    {"TeInnerSpace", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chun ked\r\n\r\n"},
    {"TeVerticalTab", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\v\r\n\r\n"},
    {"TeSpaceBeforeColon", "HTTP/1.1 200 OK\r\nTransfer-Encoding : chunked\r\n\r\n"},
    {"TeWithHttp10", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"},
    {"TeOn204", "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n"},
    {"TeOn100", "HTTP/1.1 100 Continue\r\nTransfer-Encoding: chunked\r\n\r\n"},
    {"TeOn101",
     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
     "Transfer-Encoding: chunked\r\n\r\n"},
    // --- 101 Switching Protocols
    {"SwitchingWithoutUpgrade", "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n\r\n"},
    {"SwitchingEmptyUpgrade", "HTTP/1.1 101 Switching Protocols\r\nUpgrade:\r\n\r\n"},
    {"SwitchingHttp10", "HTTP/1.0 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"},
    // --- limits (defaults: 8192 per line, 65536 per head, 200 headers)
    {"StatusLineTooLong", "HTTP/1.1 200 " + big(8200) + "\r\nContent-Length: 0\r\n\r\n"},
    {"HeaderLineTooLong", "HTTP/1.1 200 OK\r\nX: " + big(8200) + "\r\nContent-Length: 0\r\n\r\n"},
    {"HeadTooLarge",
     [] {
         std::string s = "HTTP/1.1 200 OK\r\n";
         for (int i = 0; i < 9; ++i) s += "X: " + big(8000) + "\r\n";
         return s + "Content-Length: 0\r\n\r\n";
     }()},
    {"TooManyHeaders", "HTTP/1.1 200 OK\r\n" + many_headers(200) + "Content-Length: 0\r\n\r\n"},
    // --- incomplete
    {"NoTerminator", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"},
};

std::string case_name(const ::testing::TestParamInfo<BadCase>& info) {
    return info.param.name;
}

INSTANTIATE_TEST_SUITE_P(Strict, ResponseRejects, ::testing::ValuesIn(kBadCases), case_name);

TEST(ResponseRejectsTable, HasEnoughCases) {
    EXPECT_GE(std::size(kBadCases), 30u);
}

// ---------------------------------------------------------------- status line

TEST(ResponseHead, SimpleOk) {
    const std::string raw =
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 12\r\n\r\nhello world!";
    ResponseHead h;
    size_t len = 0;
    ASSERT_TRUE(scan_and_parse(raw, h, {}, false, &len));
    EXPECT_EQ(len, raw.size() - 12);
    EXPECT_EQ(h.status, 200);
    EXPECT_EQ(h.version_minor, 1);
    EXPECT_EQ(h.reason, "OK");
    EXPECT_EQ(h.framing, ResponseFraming::ContentLength);
    EXPECT_EQ(h.content_length, 12u);
    EXPECT_TRUE(h.keep_alive);
    EXPECT_FALSE(h.upgrade);
    EXPECT_FALSE(h.tunnel);
    EXPECT_FALSE(h.informational());
    ASSERT_EQ(h.headers.size(), 2u);
    EXPECT_EQ(h.headers[0].name, "Content-Type");
    EXPECT_EQ(h.headers[0].value, "text/html");
}

TEST(ResponseHead, MissingReasonWithAndWithoutSpace) {
    ResponseHead h;
    ASSERT_TRUE(scan_and_parse("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", h));
    EXPECT_EQ(h.status, 200);
    EXPECT_EQ(h.reason, "");
    ASSERT_TRUE(scan_and_parse("HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", h));
    EXPECT_EQ(h.status, 404);
    EXPECT_EQ(h.reason, "");
}

TEST(ResponseHead, ReasonKeptAsSent) {
    ResponseHead h;
    ASSERT_TRUE(scan_and_parse("HTTP/1.1 200 Very\tWell  Done \r\nContent-Length: 0\r\n\r\n", h));
    EXPECT_EQ(h.reason, "Very\tWell  Done ");
    ASSERT_TRUE(scan_and_parse("HTTP/1.1 200 Tr\xc3\xa8s bien\r\nContent-Length: 0\r\n\r\n", h));
    EXPECT_EQ(h.reason, "Tr\xc3\xa8s bien");  // obs-text
    ASSERT_TRUE(scan_and_parse("HTTP/1.1 200  \r\nContent-Length: 0\r\n\r\n", h));
    EXPECT_EQ(h.reason, " ");
}

TEST(ResponseHead, StatusRangeBoundaries) {
    const std::pair<const char*, int> ok[] = {{"100", 100}, {"199", 199}, {"200", 200},
                                              {"399", 399}, {"500", 500}, {"599", 599}};
    for (const auto& [code, status] : ok) {
        std::string raw = std::string("HTTP/1.1 ") + code + " X\r\nContent-Length: 0\r\n\r\n";
        ResponseHead h;
        ASSERT_TRUE(scan_and_parse(raw, h)) << code;
        EXPECT_EQ(h.status, status);
    }
}

TEST(ResponseHead, VersionsAndHigherMinorAs11) {
    ResponseHead h;
    ASSERT_TRUE(scan_and_parse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", h));
    EXPECT_EQ(h.version_minor, 0);
    for (char minor = '1'; minor <= '9'; ++minor) {
        std::string raw = std::string("HTTP/1.") + minor + " 200 OK\r\nContent-Length: 0\r\n\r\n";
        ASSERT_TRUE(scan_and_parse(raw, h)) << raw;
        EXPECT_EQ(h.version_minor, 1);
        EXPECT_TRUE(h.keep_alive);
    }
}

// ---------------------------------------------------------------- headers

TEST(ResponseHead, HeadersTrimmedOrderedAndRepeated) {
    const std::string raw =
        "HTTP/1.1 200 OK\r\nSet-Cookie:  a=1 \t\r\nset-cookie:b=2\r\nX-Empty:\r\nX-Tab: a\tb\r\n"
        "X-Obs: caf\xc3\xa9\r\nContent-Length: 0\r\n\r\n";
    ResponseHead h;
    ASSERT_TRUE(scan_and_parse(raw, h));
    ASSERT_EQ(h.headers.size(), 6u);
    EXPECT_EQ(h.headers[0].name, "Set-Cookie");
    EXPECT_EQ(h.headers[0].value, "a=1");
    EXPECT_EQ(h.headers[1].name, "set-cookie");
    EXPECT_EQ(h.headers[1].value, "b=2");
    EXPECT_EQ(h.headers[2].value, "");
    EXPECT_EQ(h.headers[3].value, "a\tb");
    EXPECT_EQ(h.headers[4].value, "caf\xc3\xa9");
    ASSERT_NE(h.find("SET-COOKIE"), nullptr);
    EXPECT_EQ(h.find("set-Cookie")->value, "a=1");
    EXPECT_EQ(h.find("missing"), nullptr);
}

TEST(ResponseHead, ViewsPointIntoTheBuffer) {
    const std::string raw = "HTTP/1.1 201 Created\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n";
    ResponseHead h;
    ASSERT_TRUE(scan_and_parse(raw, h));
    const char* b = raw.data();
    const char* e = raw.data() + raw.size();
    EXPECT_TRUE(h.reason.data() >= b && h.reason.data() + h.reason.size() <= e);
    for (const Header& hd : h.headers) {
        EXPECT_TRUE(hd.name.data() >= b && hd.name.data() + hd.name.size() <= e);
        EXPECT_TRUE(hd.value.data() >= b && hd.value.data() + hd.value.size() <= e);
    }
}

TEST(ResponseHead, HeadersUseTheGivenMemoryResource) {
    char storage[4096];
    std::pmr::monotonic_buffer_resource arena(storage, sizeof storage,
                                              std::pmr::null_memory_resource());
    ResponseHead h(&arena);
    ASSERT_TRUE(scan_and_parse("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nContent-Length: 0\r\n\r\n", h));
    EXPECT_EQ(h.headers.get_allocator().resource(), &arena);
    EXPECT_EQ(h.headers.size(), 3u);
}

// ---------------------------------------------------------------- keep-alive

TEST(ResponseHead, KeepAliveHttp11) {
    ResponseHead h;
    ASSERT_TRUE(scan_and_parse("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", h));
    EXPECT_TRUE(h.keep_alive);
    ASSERT_TRUE(
        scan_and_parse("HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n", h));
    EXPECT_FALSE(h.keep_alive);
    ASSERT_TRUE(
        scan_and_parse("HTTP/1.1 200 OK\r\nConnection: foo\r\nConnection: keep-alive, close\r\n"
                       "Content-Length: 0\r\n\r\n",
                       h));
    EXPECT_FALSE(h.keep_alive);
    ASSERT_TRUE(
        scan_and_parse("HTTP/1.1 200 OK\r\nConnection: closed\r\nContent-Length: 0\r\n\r\n", h));
    EXPECT_TRUE(h.keep_alive);
}

TEST(ResponseHead, KeepAliveHttp10) {
    ResponseHead h;
    ASSERT_TRUE(scan_and_parse("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n", h));
    EXPECT_FALSE(h.keep_alive);
    EXPECT_EQ(h.framing, ResponseFraming::ContentLength);
    ASSERT_TRUE(scan_and_parse(
        "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 3\r\n\r\n", h));
    EXPECT_TRUE(h.keep_alive);
    ASSERT_TRUE(scan_and_parse(
        "HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 3\r\n\r\n", h));
    EXPECT_FALSE(h.keep_alive);
}

// ---------------------------------------------------------------- framing

TEST(ResponseHead, ContentLengthValues) {
    ResponseHead h;
    ASSERT_TRUE(scan_and_parse("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", h));
    EXPECT_EQ(h.framing, ResponseFraming::ContentLength);
    EXPECT_EQ(h.content_length, 0u);
    ASSERT_TRUE(scan_and_parse("HTTP/1.1 200 OK\r\nContent-Length: 007\r\n\r\n", h));
    EXPECT_EQ(h.content_length, 7u);
    ASSERT_TRUE(
        scan_and_parse("HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775807\r\n\r\n", h));
    EXPECT_EQ(h.content_length, 9223372036854775807u);
}

TEST(ResponseHead, IdenticalContentLengthsAccepted) {
    ResponseHead h;
    ASSERT_TRUE(
        scan_and_parse("HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\ncontent-length: 7\r\n\r\n", h));
    EXPECT_EQ(h.framing, ResponseFraming::ContentLength);
    EXPECT_EQ(h.content_length, 7u);
}

TEST(ResponseHead, ChunkedVariants) {
    const char* variants[] = {
        "Transfer-Encoding: chunked\r\n",
        "Transfer-Encoding: CHUNKED\r\n",
        "transfer-encoding:   Chunked \t\r\n",
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: gzip,chunked\r\n",
        "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: deflate, gzip, chunked\r\n",
    };
    for (const char* te : variants) {
        std::string raw = std::string("HTTP/1.1 200 OK\r\n") + te + "\r\n";
        ResponseHead h;
        ASSERT_TRUE(scan_and_parse(raw, h)) << te;
        EXPECT_EQ(h.framing, ResponseFraming::Chunked) << te;
        EXPECT_EQ(h.content_length, 0u);
        EXPECT_TRUE(h.keep_alive);
    }
}

TEST(ResponseHead, NoLengthMeansUntilClose) {
    ResponseHead h;
    ASSERT_TRUE(scan_and_parse("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", h));
    EXPECT_EQ(h.framing, ResponseFraming::UntilClose);
    EXPECT_FALSE(h.keep_alive);
    ASSERT_TRUE(scan_and_parse("HTTP/1.1 500 Oops\r\nConnection: keep-alive\r\n\r\n", h));
    EXPECT_EQ(h.framing, ResponseFraming::UntilClose);
    EXPECT_FALSE(h.keep_alive);  // forced: the body ends with the connection
    ASSERT_TRUE(scan_and_parse("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", h));
    EXPECT_EQ(h.framing, ResponseFraming::UntilClose);
    EXPECT_FALSE(h.keep_alive);
}

TEST(ResponseHead, NoBodyStatusesIgnoreContentLength) {
    const char* heads[] = {
        "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 204 No Content\r\nContent-Length: 99\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
        "HTTP/1.1 204 No Content\r\n\r\n",
        "HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n",
    };
    for (const char* raw : heads) {
        ResponseHead h;
        ASSERT_TRUE(scan_and_parse(raw, h)) << raw;
        EXPECT_EQ(h.framing, ResponseFraming::None) << raw;
        EXPECT_EQ(h.content_length, 0u);
        EXPECT_TRUE(h.keep_alive) << raw;  // no body, so not UntilClose
    }
    ResponseHead h;
    ASSERT_TRUE(scan_and_parse("HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n", h));
    ASSERT_NE(h.find("content-length"), nullptr);  // kept as a header
    EXPECT_EQ(h.find("content-length")->value, "1234");
}

TEST(ResponseHead, AnswerToHeadHasNoBody) {
    const char* heads[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n",  // not UntilClose
        "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\n",
    };
    for (const char* raw : heads) {
        ResponseHead h;
        ASSERT_TRUE(scan_and_parse(raw, h, {}, true)) << raw;
        EXPECT_EQ(h.framing, ResponseFraming::None) << raw;
        EXPECT_EQ(h.content_length, 0u);
        EXPECT_TRUE(h.keep_alive) << raw;
    }
    // the same heads answering GET
    ResponseHead h;
    ASSERT_TRUE(scan_and_parse(heads[0], h, {}, false));
    EXPECT_EQ(h.framing, ResponseFraming::ContentLength);
    ASSERT_TRUE(scan_and_parse(heads[2], h, {}, false));
    EXPECT_EQ(h.framing, ResponseFraming::UntilClose);
    // still validated: an ambiguous or bogus head is invalid for HEAD too
    EXPECT_FALSE(scan_and_parse("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", h, {}, true));
    EXPECT_FALSE(scan_and_parse(
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", h, {}, true));
    // HTTP/1.0 answering HEAD without Connection: keep-alive closes
    ASSERT_TRUE(scan_and_parse("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n", h, {}, true));
    EXPECT_EQ(h.framing, ResponseFraming::None);
    EXPECT_FALSE(h.keep_alive);
}

TEST(ResponseHead, AnswerToConnect) {
    const std::string ok = "HTTP/1.1 200 Connection Established\r\nContent-Length: 5\r\n\r\n";
    ResponseHead h;
    ASSERT_TRUE(parse_response_head(ok, {}, Method::Connect, h));
    EXPECT_EQ(h.framing, ResponseFraming::None);
    EXPECT_TRUE(h.tunnel);
    EXPECT_FALSE(h.keep_alive);
    EXPECT_EQ(h.content_length, 0u);
    const std::string denied = "HTTP/1.1 407 Proxy Auth\r\nContent-Length: 5\r\n\r\n";
    ASSERT_TRUE(parse_response_head(denied, {}, Method::Connect, h));
    EXPECT_EQ(h.framing, ResponseFraming::ContentLength);
    EXPECT_FALSE(h.tunnel);
    EXPECT_TRUE(h.keep_alive);
    // any 2xx opens the tunnel, 204 included; a 1xx does not
    ASSERT_TRUE(parse_response_head("HTTP/1.1 204 OK\r\n\r\n", {}, Method::Connect, h));
    EXPECT_TRUE(h.tunnel);
    ASSERT_TRUE(parse_response_head("HTTP/1.1 100 Continue\r\n\r\n", {}, Method::Connect, h));
    EXPECT_FALSE(h.tunnel);
    EXPECT_TRUE(h.informational());
    // the bool overload never means CONNECT
    ASSERT_TRUE(parse_response_head(ok, {}, false, h));
    EXPECT_FALSE(h.tunnel);
    EXPECT_EQ(h.framing, ResponseFraming::ContentLength);
}

TEST(ResponseHead, BoolOverloadMatchesMethodOverload) {
    const std::string raw = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
    ResponseHead a;
    ResponseHead b;
    ASSERT_TRUE(parse_response_head(raw, {}, true, a));
    ASSERT_TRUE(parse_response_head(raw, {}, Method::Head, b));
    EXPECT_EQ(a.framing, b.framing);
    ASSERT_TRUE(parse_response_head(raw, {}, false, a));
    ASSERT_TRUE(parse_response_head(raw, {}, Method::Post, b));
    EXPECT_EQ(a.framing, b.framing);
    EXPECT_EQ(a.content_length, b.content_length);
}

// ---------------------------------------------------------------- 1xx

TEST(ResponseHead, SwitchingProtocols) {
    const std::string raw =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x05hello";
    ResponseHead h;
    size_t len = 0;
    ASSERT_TRUE(scan_and_parse(raw, h, {}, false, &len));
    EXPECT_EQ(len, raw.size() - 7);
    EXPECT_EQ(h.status, 101);
    EXPECT_TRUE(h.upgrade);
    EXPECT_FALSE(h.informational());
    EXPECT_EQ(h.framing, ResponseFraming::None);
    EXPECT_FALSE(h.keep_alive);  // no longer an HTTP connection
    // a Content-Length on a 101 is ignored
    ASSERT_TRUE(scan_and_parse(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nContent-Length: 3\r\n\r\n", h));
    EXPECT_TRUE(h.upgrade);
    EXPECT_EQ(h.framing, ResponseFraming::None);
}

TEST(ResponseHead, UpgradeOnlyOn101) {
    ResponseHead h;
    ASSERT_TRUE(scan_and_parse(
        "HTTP/1.1 200 OK\r\nUpgrade: h2c\r\nConnection: upgrade\r\nContent-Length: 0\r\n\r\n", h));
    EXPECT_FALSE(h.upgrade);
    EXPECT_TRUE(h.keep_alive);
}

TEST(ResponseHead, InformationalThenFinalAfterReset) {
    const std::string cont = "HTTP/1.1 100 Continue\r\n\r\n";
    const std::string hints =
        "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n";
    const std::string final_head = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
    const std::string all = cont + hints + final_head + "ok";
    std::string_view rest = all;
    ResponseHeadScanner s(ResponseLimits{});

    ASSERT_EQ(s.scan(rest), Scan::Complete);
    ASSERT_EQ(s.head_length(), cont.size());
    ResponseHead h;
    ASSERT_TRUE(parse_response_head(rest.substr(0, s.head_length()), {}, false, h));
    EXPECT_EQ(h.status, 100);
    EXPECT_TRUE(h.informational());
    EXPECT_EQ(h.framing, ResponseFraming::None);
    rest.remove_prefix(s.head_length());
    s.reset();

    ASSERT_EQ(scan_bytewise(rest, s), Scan::Complete);
    ASSERT_EQ(s.head_length(), hints.size());
    ASSERT_TRUE(parse_response_head(rest.substr(0, s.head_length()), {}, false, h));
    EXPECT_EQ(h.status, 103);
    EXPECT_TRUE(h.informational());
    EXPECT_EQ(h.find("link")->value, "</style.css>; rel=preload; as=style");
    rest.remove_prefix(s.head_length());
    s.reset();

    ASSERT_EQ(s.scan(rest), Scan::Complete);
    ASSERT_EQ(s.head_length(), final_head.size());
    ASSERT_TRUE(parse_response_head(rest.substr(0, s.head_length()), {}, false, h));
    EXPECT_EQ(h.status, 200);
    EXPECT_FALSE(h.informational());
    EXPECT_EQ(h.framing, ResponseFraming::ContentLength);
    EXPECT_EQ(h.content_length, 2u);
    EXPECT_EQ(h.headers.size(), 1u);  // the earlier heads' headers are gone
}

// ---------------------------------------------------------------- limits

TEST(ResponseHead, LimitsAtTheBoundaryAreAccepted) {
    ResponseLimits limits;
    limits.max_line = 64;
    limits.max_head = 200;
    limits.max_headers = 3;
    // status line of exactly 64 bytes, then 65
    const std::string line = "HTTP/1.1 200 " + big(64 - 13);
    ASSERT_EQ(line.size(), 64u);
    EXPECT_TRUE(accepts(line + "\r\nContent-Length: 0\r\n\r\n", limits));
    EXPECT_FALSE(accepts(line + "b\r\nContent-Length: 0\r\n\r\n", limits));
    // header line of exactly 64 bytes, then 65
    const std::string hdr = "X: " + big(61);
    EXPECT_TRUE(accepts("HTTP/1.1 200 OK\r\n" + hdr + "\r\nContent-Length: 0\r\n\r\n", limits));
    EXPECT_FALSE(accepts("HTTP/1.1 200 OK\r\n" + hdr + "b\r\nContent-Length: 0\r\n\r\n", limits));
    // exactly 3 headers, then 4
    EXPECT_TRUE(accepts("HTTP/1.1 200 OK\r\nA: a\r\nB: b\r\nContent-Length: 0\r\n\r\n", limits));
    EXPECT_FALSE(
        accepts("HTTP/1.1 200 OK\r\nA: a\r\nB: b\r\nC: c\r\nContent-Length: 0\r\n\r\n", limits));
    // head of exactly max_head bytes, then one more
    limits.max_headers = 10;
    std::string head =
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nB: " + big(50) + "\r\nC: " + big(50) + "\r\n";
    head += "D: " + big(200 - head.size() - 7) + "\r\n\r\n";
    ASSERT_EQ(head.size(), 200u);
    EXPECT_TRUE(accepts(head, limits));
    head.insert(head.size() - 4, "x");
    EXPECT_FALSE(accepts(head, limits));
    // the parser applies the limits it is given even to a head it did not get from a scanner
    ResponseHead h;
    EXPECT_FALSE(parse_response_head(head, limits, false, h));
}

// ---------------------------------------------------------------- scanner behaviour

TEST(ResponseHeadScanner, NeedMoreUntilTerminatorThenCompleteAndSticky) {
    const std::string raw = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody";
    ResponseHeadScanner s(ResponseLimits{});
    EXPECT_EQ(s.scan(raw.substr(0, 5)), Scan::NeedMore);
    EXPECT_EQ(s.head_length(), 0u);
    EXPECT_EQ(s.scan(raw.substr(0, raw.size() - 5)), Scan::NeedMore);  // ends at "\r\n\r"
    EXPECT_EQ(s.scan(raw), Scan::Complete);
    EXPECT_EQ(s.head_length(), raw.size() - 4);
    EXPECT_EQ(s.scan(raw), Scan::Complete);
}

TEST(ResponseHeadScanner, BytewiseMatchesOneShot) {
    const std::string raw =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX: y\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    ResponseHeadScanner a(ResponseLimits{});
    ResponseHeadScanner b(ResponseLimits{});
    ASSERT_EQ(a.scan(raw), Scan::Complete);
    ASSERT_EQ(scan_bytewise(raw, b), Scan::Complete);
    EXPECT_EQ(a.head_length(), b.head_length());
    EXPECT_EQ(a.head_length(), raw.find("\r\n\r\n") + 4);
}

TEST(ResponseHeadScanner, RejectsNonHttpAtOnce) {
    // an HTTP/0.9 body, an HTTP/2 preface or a TLS record fails on the first wrong byte
    const std::pair<std::string, size_t> cases[] = {
        {"<html>", 1},        {"HTTP/2", 6},        {"HTTP/1.1 6", 10},
        {"HTTP/1.1 20x", 12}, {"\x16\x03\x01"s, 1}, {"HTTP/1.1 20\r", 12},
    };
    for (const auto& [raw, fail_at] : cases) {
        ResponseHeadScanner s(ResponseLimits{});
        EXPECT_EQ(s.scan(raw.substr(0, fail_at - 1)), Scan::NeedMore) << raw;
        EXPECT_EQ(s.scan(raw.substr(0, fail_at)), Scan::Error) << raw;
    }
}

TEST(ResponseHeadScanner, DetectsOversizeBeforeTerminator) {
    ResponseLimits limits;
    limits.max_line = 20;
    limits.max_headers = 1;
    {
        ResponseHeadScanner s(limits);
        const std::string partial = "HTTP/1.1 200 " + big(7);  // 20 bytes, no CRLF yet
        EXPECT_EQ(s.scan(partial), Scan::NeedMore);
        EXPECT_EQ(s.scan(partial + "a"), Scan::Error);
    }
    {
        ResponseHeadScanner s(limits);
        EXPECT_EQ(s.scan("HTTP/1.1 200 OK\r\nX: " + big(18)), Scan::Error);
    }
    {
        ResponseHeadScanner s(limits);
        EXPECT_EQ(s.scan("HTTP/1.1 200 OK\r\nA: a\r\nB"), Scan::Error);
    }
    {
        limits.max_line = 8192;
        limits.max_head = 30;
        ResponseHeadScanner s(limits);
        EXPECT_EQ(s.scan("HTTP/1.1 200 OK\r\nX: " + big(10)), Scan::NeedMore);  // 30 bytes
        EXPECT_EQ(s.scan("HTTP/1.1 200 OK\r\nX: " + big(11)), Scan::Error);
    }
}

TEST(ResponseHeadScanner, ErrorIsStickyUntilReset) {
    ResponseHeadScanner s(ResponseLimits{});
    EXPECT_EQ(s.scan("HTTP/1.1 200 OK\n"), Scan::Error);
    EXPECT_EQ(s.scan("HTTP/1.1 200 OK\r\n\r\n"), Scan::Error);
    EXPECT_EQ(s.head_length(), 0u);
    s.reset();
    EXPECT_EQ(s.scan("HTTP/1.1 200 OK\r\n\r\n"), Scan::Complete);
    EXPECT_EQ(s.head_length(), 19u);
}

// ---------------------------------------------------------------- parser robustness

TEST(ParseResponseHead, RejectsIncompleteOrTrailingBytes) {
    ResponseHead h;
    EXPECT_FALSE(parse_response_head("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", {}, false, h));
    EXPECT_FALSE(
        parse_response_head("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nX", {}, false, h));
    EXPECT_FALSE(parse_response_head("", {}, false, h));
    EXPECT_FALSE(parse_response_head("HTTP/1.1 200 OK\r\n", {}, false, h));
}

TEST(ParseResponseHead, ResetsOutput) {
    ResponseHead h;
    ASSERT_TRUE(parse_response_head("HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\nA: b\r\n\r\n",
                                    {}, false, h));
    ASSERT_TRUE(parse_response_head("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", {},
                                    Method::Connect, h));
    ASSERT_TRUE(parse_response_head("HTTP/1.0 204\r\n\r\n", {}, false, h));
    EXPECT_EQ(h.status, 204);
    EXPECT_EQ(h.version_minor, 0);
    EXPECT_EQ(h.reason, "");
    EXPECT_TRUE(h.headers.empty());
    EXPECT_EQ(h.framing, ResponseFraming::None);
    EXPECT_EQ(h.content_length, 0u);
    EXPECT_FALSE(h.keep_alive);
    EXPECT_FALSE(h.upgrade);
    EXPECT_FALSE(h.tunnel);
    // after a failure the status and flags are reset too, never left from the previous head
    EXPECT_FALSE(parse_response_head("HTTP/1.1 999 No\r\n\r\n", {}, false, h));
    EXPECT_EQ(h.status, 0);
}

}  // namespace
}  // namespace tollgate::http
