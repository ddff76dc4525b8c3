#include "core/http/request_head.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace tollgate::http {
namespace {

// Runs the scanner over the whole input, then the parser over the head it found. Returns 0 or
// the first error status; `head_len` receives the scanner's head length.
int scan_and_parse(std::string_view raw, RequestHead& out, const HeadLimits& limits = {},
                   size_t* head_len = nullptr) {
    HeadScanner scanner(limits);
    switch (scanner.scan(raw)) {
        case HeadScanner::Status::Error:
            return scanner.error_status();
        case HeadScanner::Status::NeedMore:
            return -1;
        case HeadScanner::Status::Complete:
            break;
    }
    if (head_len) *head_len = scanner.head_length();
    return parse_request_head(raw.substr(0, scanner.head_length()), limits, out);
}

int status_of(std::string_view raw, const HeadLimits& limits = {}) {
    RequestHead head;
    return scan_and_parse(raw, head, limits);
}

// Feeds the scanner a growing prefix, one byte more each call, as a slow client would.
HeadScanner::Status scan_bytewise(std::string_view raw, HeadScanner& scanner) {
    HeadScanner::Status st = HeadScanner::Status::NeedMore;
    for (size_t n = 1; n <= raw.size() && st == HeadScanner::Status::NeedMore; ++n) {
        st = scanner.scan(raw.substr(0, n));
    }
    return st;
}

// ---------------------------------------------------------------- malformed / ambiguous table

struct BadCase {
    const char* name;
    std::string raw;
    int status;
};

std::string big(size_t n, char c = 'a') {
    return std::string(n, c);
}

class HeadRejects : public ::testing::TestWithParam<BadCase> {};

TEST_P(HeadRejects, ExactStatus) {
    const BadCase& c = GetParam();
    EXPECT_EQ(status_of(c.raw), c.status) << c.raw;
    // The same verdict when the bytes trickle in one at a time.
    HeadScanner one_shot(HeadLimits{});
    HeadScanner trickle(HeadLimits{});
    const auto a = one_shot.scan(c.raw);
    const auto b = scan_bytewise(c.raw, trickle);
    EXPECT_EQ(a, b);
    EXPECT_EQ(one_shot.error_status(), trickle.error_status());
    EXPECT_EQ(one_shot.head_length(), trickle.head_length());
}

const BadCase kBadCases[] = {
    // --- line terminators and control bytes
    {"BareLfAfterRequestLine", "GET / HTTP/1.1\nHost: a\r\n\r\n", 400},
    {"BareLfAfterHeader", "GET / HTTP/1.1\r\nHost: a\n\r\n", 400},
    {"BareLfTerminator", "GET / HTTP/1.1\r\nHost: a\r\n\n", 400},
    {"BareCrInValue", "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400},
    {"BareCrInRequestLine", "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"NulInValue", std::string("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 35), 400},
    {"NulInTarget", std::string("GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n", 28), 400},
    {"VerticalTabInValue", "GET / HTTP/1.1\r\nHost: a\r\nX: a\vb\r\n\r\n", 400},
    {"DelInValue", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", 400},
    {"EscInHeaderName", "GET / HTTP/1.1\r\nHost: a\r\nX\x1b: a\r\n\r\n", 400},
    {"LeadingBareLf", "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    // --- request line
    {"DoubleSpaceAfterMethod", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"DoubleSpaceBeforeVersion", "GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"TrailingSpaceAfterVersion", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400},
    {"LeadingSpace", " GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"TabSeparator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"MissingVersion", "GET /\r\nHost: a\r\n\r\n", 400},
    {"MethodNotToken", "GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"NonAsciiInTarget", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"FragmentInTarget", "GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"RelativeTarget", "GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"AsteriskWithGet", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"AuthorityFormWithGet", "GET example.com:80 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"ConnectWithOriginForm", "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"ConnectWithoutPort", "CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"AbsoluteFormFtpScheme", "GET ftp://a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"AbsoluteFormUserinfo", "GET http://u@a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"AbsoluteFormEmptyHost", "GET http:///b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    // --- version
    {"VersionMissingMinor", "GET / HTTP/1\r\nHost: a\r\n\r\n", 400},
    {"VersionLowercase", "GET / http/1.1\r\nHost: a\r\n\r\n", 400},
    {"VersionTrailingGarbage", "GET / HTTP/1.1x\r\nHost: a\r\n\r\n", 400},
    {"VersionTwoDigitMinor", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400},
    {"VersionNotDigit", "GET / HTTP/x.1\r\nHost: a\r\n\r\n", 400},
    {"Version20", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
    {"Version2", "GET / HTTP/2\r\nHost: a\r\n\r\n", 505},
    {"Version3", "GET / HTTP/3\r\nHost: a\r\n\r\n", 505},
    {"Version09", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505},
    // --- header syntax
    {"SpaceBeforeColon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
    {"TabBeforeColon", "GET / HTTP/1.1\r\nHost: a\r\nX-A\t: b\r\n\r\n", 400},
    {"ObsFoldSpace", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400},
    {"ObsFoldTab", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", 400},
    {"WhitespaceBeforeFirstHeader", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400},
    {"MissingColon", "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400},
    {"EmptyName", "GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", 400},
    {"NameWithSlash", "GET / HTTP/1.1\r\nHost: a\r\nX/Y: v\r\n\r\n", 400},
    // --- Host
    {"Http11WithoutHost", "GET / HTTP/1.1\r\nX: a\r\n\r\n", 400},
    {"TwoHosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400},
    {"TwoHostsDifferentCase", "GET / HTTP/1.1\r\nHost: a\r\nhOST: b\r\n\r\n", 400},
    {"HostWithSpace", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
    {"HostWithSlash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
    {"HostWithAt", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400},
    {"HostEmpty", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 400},
    {"HostBadPort", "GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", 400},
    {"HostUnclosedIpLiteral", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400},
    {"HostBadPercent", "GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n", 400},
    {"AbsoluteFormWithoutHostHeader", "GET http://a/b HTTP/1.1\r\n\r\n", 400},
    {"Http10TwoHosts", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400},
    // --- Content-Length
    {"ClPlusSign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400},
    {"ClMinusSign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n", 400},
    {"ClInnerSpace", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\n", 400},
    {"ClHex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400},
    {"ClEmpty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400},
    {"ClOverflow64", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n",
     400},
    {"ClAbove63Bits", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n",
     400},
    {"ClTwoDifferentFields",
     "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400},
    {"ClDifferentList", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", 400},
    {"ClEmptyListElement", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n", 400},
    // --- Transfer-Encoding. Choices: a well-formed coding we do not implement is 501 (RFC 9112
    // 6.1); duplicated chunked, chunked not final, parameters on chunked, empty elements and
    // non-token text are treated as obfuscation: 400.
    {"TeWithHttp10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
    {"TeAndCl",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400},
    {"ClAndTe",
     "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
    {"TeChunkedTwiceInList",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400},
    {"TeChunkedTwiceInFields",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
     "chunked\r\n\r\n",
     400},
    {"TeGzipThenChunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
     501},
    {"TeGzipOnly", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
    {"TeIdentity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 501},
    {"TeXchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 501},
    {"TeChunkedThenGzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
     400},
    {"TeChunkedWithParam", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n",
     400},
    {"TeChunkedVerticalTab", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\v\r\n\r\n",
     400},
    {"TeEmpty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", 400},
    {"TeEmptyElement", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n", 400},
    {"TeQuoted", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", 400},
    {"TeInnerSpace", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chun ked\r\n\r\n", 400},
    {"TeSpaceBeforeColon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
     400},
    // --- limits (defaults: 8192 per line, 32768 per head, 100 headers)
    {"RequestLineTooLong", "GET /" + big(8200) + " HTTP/1.1\r\nHost: a\r\n\r\n", 414},
    {"HeaderLineTooLong", "GET / HTTP/1.1\r\nHost: a\r\nX: " + big(8200) + "\r\n\r\n", 431},
    {"HeadTooLarge",
     "GET / HTTP/1.1\r\nHost: a\r\nA: " + big(8000) + "\r\nB: " + big(8000) +
         "\r\nC: " + big(8000) + "\r\nD: " + big(8000) + "\r\nE: " + big(8000) + "\r\n\r\n",
     431},
};

std::string case_name(const ::testing::TestParamInfo<BadCase>& info) {
    return info.param.name;
}

INSTANTIATE_TEST_SUITE_P(Strict, HeadRejects, ::testing::ValuesIn(kBadCases), case_name);

// ---------------------------------------------------------------- positive cases

TEST(RequestHead, SimpleGet) {
    const std::string raw = "GET /index.html?x=1&y HTTP/1.1\r\nHost: example.com\r\n\r\n";
    RequestHead h;
    size_t len = 0;
    ASSERT_EQ(scan_and_parse(raw, h, {}, &len), 0);
    EXPECT_EQ(len, raw.size());
    EXPECT_EQ(h.method, Method::Get);
    EXPECT_EQ(h.method_name, "GET");
    EXPECT_EQ(h.target, "/index.html?x=1&y");
    EXPECT_EQ(h.path, "/index.html");
    EXPECT_EQ(h.query, "x=1&y");
    EXPECT_EQ(h.host, "example.com");
    EXPECT_EQ(h.version_minor, 1);
    EXPECT_EQ(h.framing, BodyFraming::None);
    EXPECT_TRUE(h.keep_alive);
    EXPECT_FALSE(h.expect_continue);
    EXPECT_FALSE(h.upgrade);
    ASSERT_EQ(h.headers.size(), 1u);
}

TEST(RequestHead, EmptyQueryAndNoQuery) {
    RequestHead h;
    ASSERT_EQ(scan_and_parse("GET /a? HTTP/1.1\r\nHost: a\r\n\r\n", h), 0);
    EXPECT_EQ(h.path, "/a");
    EXPECT_EQ(h.query, "");
    ASSERT_EQ(scan_and_parse("GET /a HTTP/1.1\r\nHost: a\r\n\r\n", h), 0);
    EXPECT_EQ(h.query, "");
}

TEST(RequestHead, AllKnownMethodsAndCaseSensitivity) {
    const std::pair<const char*, Method> methods[] = {
        {"GET", Method::Get},        {"HEAD", Method::Head},     {"POST", Method::Post},
        {"PUT", Method::Put},        {"DELETE", Method::Delete}, {"OPTIONS", Method::Options},
        {"PATCH", Method::Patch},    {"TRACE", Method::Trace},   {"get", Method::Other},
        {"PROPFIND", Method::Other}, {"Get", Method::Other},
    };
    for (const auto& [name, m] : methods) {
        std::string raw = std::string(name) + " / HTTP/1.1\r\nHost: a\r\n\r\n";
        RequestHead h;
        ASSERT_EQ(scan_and_parse(raw, h), 0) << name;
        EXPECT_EQ(h.method, m) << name;
        EXPECT_EQ(h.method_name, name);
    }
    EXPECT_STREQ(method_name(Method::Delete), "DELETE");
    EXPECT_STREQ(method_name(Method::Connect), "CONNECT");
    EXPECT_STREQ(method_name(Method::Other), "OTHER");
}

TEST(RequestHead, HeadersTrimmedOrderedAndRepeated) {
    const std::string raw =
        "GET / HTTP/1.1\r\nHost: a\r\nX-A:  one \t\r\nx-a:two\r\nX-Empty:\r\nX-Tab: a\tb\r\n"
        "X-Obs: caf\xc3\xa9\r\n\r\n";
    RequestHead h;
    ASSERT_EQ(scan_and_parse(raw, h), 0);
    ASSERT_EQ(h.headers.size(), 6u);
    EXPECT_EQ(h.headers[1].name, "X-A");
    EXPECT_EQ(h.headers[1].value, "one");
    EXPECT_EQ(h.headers[2].name, "x-a");
    EXPECT_EQ(h.headers[2].value, "two");
    EXPECT_EQ(h.headers[3].value, "");
    EXPECT_EQ(h.headers[4].value, "a\tb");
    EXPECT_EQ(h.headers[5].value, "caf\xc3\xa9");  // obs-text is allowed in values
    ASSERT_NE(h.find("x-A"), nullptr);
    EXPECT_EQ(h.find("X-a")->value, "one");
    EXPECT_EQ(h.find("missing"), nullptr);
}

TEST(RequestHead, LeadingCrlfsSkippedAndCounted) {
    const std::string raw = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nNEXT";
    RequestHead h;
    size_t len = 0;
    ASSERT_EQ(scan_and_parse(raw, h, {}, &len), 0);
    EXPECT_EQ(len, raw.size() - 4);
    EXPECT_EQ(h.method, Method::Get);
}

TEST(RequestHead, Http10Defaults) {
    RequestHead h;
    ASSERT_EQ(scan_and_parse("GET / HTTP/1.0\r\n\r\n", h), 0);  // no Host needed
    EXPECT_EQ(h.version_minor, 0);
    EXPECT_FALSE(h.keep_alive);
    EXPECT_EQ(h.host, "");
    ASSERT_EQ(scan_and_parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", h), 0);
    EXPECT_TRUE(h.keep_alive);
    ASSERT_EQ(scan_and_parse("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", h), 0);
    EXPECT_FALSE(h.keep_alive);
}

TEST(RequestHead, HigherMinorIsProcessedAs11) {
    RequestHead h;
    ASSERT_EQ(scan_and_parse("GET / HTTP/1.2\r\nHost: a\r\n\r\n", h), 0);
    EXPECT_EQ(h.version_minor, 1);
}

TEST(RequestHead, ConnectionTokens) {
    RequestHead h;
    ASSERT_EQ(scan_and_parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, CLOSE\r\n\r\n", h), 0);
    EXPECT_FALSE(h.keep_alive);
    ASSERT_EQ(scan_and_parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", h), 0);
    EXPECT_TRUE(h.keep_alive);
    ASSERT_EQ(scan_and_parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: x\r\nConnection: close\r\n"
                             "\r\n",
                             h),
              0);
    EXPECT_FALSE(h.keep_alive);
}

TEST(RequestHead, UpgradeNeedsBothHeaders) {
    RequestHead h;
    ASSERT_EQ(scan_and_parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                             "Upgrade: websocket\r\n\r\n",
                             h),
              0);
    EXPECT_TRUE(h.upgrade);
    ASSERT_EQ(scan_and_parse("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", h), 0);
    EXPECT_FALSE(h.upgrade);
    ASSERT_EQ(scan_and_parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n", h), 0);
    EXPECT_FALSE(h.upgrade);
}

TEST(RequestHead, ExpectContinue) {
    RequestHead h;
    ASSERT_EQ(scan_and_parse("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n"
                             "Content-Length: 3\r\n\r\n",
                             h),
              0);
    EXPECT_TRUE(h.expect_continue);
    ASSERT_EQ(scan_and_parse("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", h), 0);
    EXPECT_FALSE(h.expect_continue);
}

TEST(RequestHead, ContentLengthAccepted) {
    RequestHead h;
    ASSERT_EQ(scan_and_parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\r\n", h), 0);
    EXPECT_EQ(h.framing, BodyFraming::ContentLength);
    EXPECT_EQ(h.content_length, 42u);
    ASSERT_EQ(scan_and_parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", h), 0);
    EXPECT_EQ(h.framing, BodyFraming::ContentLength);
    EXPECT_EQ(h.content_length, 0u);
    ASSERT_EQ(scan_and_parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807"
                             "\r\n\r\n",
                             h),
              0);
    EXPECT_EQ(h.content_length, 9223372036854775807u);
}

TEST(RequestHead, IdenticalContentLengthsAccepted) {
    RequestHead h;
    ASSERT_EQ(scan_and_parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7, 7\r\n"
                             "content-length: 7\r\n\r\n",
                             h),
              0);
    EXPECT_EQ(h.framing, BodyFraming::ContentLength);
    EXPECT_EQ(h.content_length, 7u);
}

TEST(RequestHead, ChunkedAccepted) {
    const char* variants[] = {
        "Transfer-Encoding: chunked\r\n",
        "Transfer-Encoding: CHUNKED\r\n",
        "transfer-encoding:   Chunked \t\r\n",
    };
    for (const char* te : variants) {
        std::string raw = std::string("POST / HTTP/1.1\r\nHost: a\r\n") + te + "\r\n";
        RequestHead h;
        ASSERT_EQ(scan_and_parse(raw, h), 0) << te;
        EXPECT_EQ(h.framing, BodyFraming::Chunked);
    }
}

TEST(RequestHead, AbsoluteForm) {
    RequestHead h;
    ASSERT_EQ(
        scan_and_parse("GET http://Example.com:8080/p/q?x=1 HTTP/1.1\r\nHost: other\r\n\r\n", h),
        0);
    EXPECT_EQ(h.host, "Example.com:8080");
    EXPECT_EQ(h.path, "/p/q");
    EXPECT_EQ(h.query, "x=1");
    ASSERT_EQ(scan_and_parse("GET HTTPS://a HTTP/1.1\r\nHost: a\r\n\r\n", h), 0);
    EXPECT_EQ(h.host, "a");
    EXPECT_EQ(h.path, "/");
    ASSERT_EQ(scan_and_parse("GET http://a?z HTTP/1.0\r\n\r\n", h), 0);
    EXPECT_EQ(h.host, "a");
    EXPECT_EQ(h.path, "/");
    EXPECT_EQ(h.query, "z");
    ASSERT_EQ(scan_and_parse("GET http://[::1]:80/ HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", h), 0);
    EXPECT_EQ(h.host, "[::1]:80");
}

TEST(RequestHead, AsteriskAndAuthorityForms) {
    RequestHead h;
    ASSERT_EQ(scan_and_parse("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", h), 0);
    EXPECT_EQ(h.method, Method::Options);
    EXPECT_EQ(h.target, "*");
    ASSERT_EQ(
        scan_and_parse("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", h), 0);
    EXPECT_EQ(h.method, Method::Connect);
    EXPECT_EQ(h.host, "example.com:443");
    EXPECT_EQ(h.path, "");
}

TEST(RequestHead, ValidHostForms) {
    const char* hosts[] = {"a",
                           "example.com:80",
                           "127.0.0.1",
                           "[::1]",
                           "[2001:db8::1]:8443",
                           "xn--bcher-kva.example",
                           "a_b-c~d",
                           "a%41b"};
    for (const char* host : hosts) {
        std::string raw = std::string("GET / HTTP/1.1\r\nHost: ") + host + "\r\n\r\n";
        RequestHead h;
        ASSERT_EQ(scan_and_parse(raw, h), 0) << host;
        EXPECT_EQ(h.host, host);
    }
}

TEST(RequestHead, LimitsAtTheBoundaryAreAccepted) {
    HeadLimits limits;
    limits.max_line = 64;
    limits.max_head = 200;
    limits.max_headers = 3;
    // request line of exactly 64 bytes
    std::string line = "GET /" + big(64 - 14) + " HTTP/1.1";
    ASSERT_EQ(line.size(), 64u);
    EXPECT_EQ(status_of(line + "\r\nHost: a\r\n\r\n", limits), 0);
    EXPECT_EQ(status_of("GET /" + big(64 - 13) + " HTTP/1.1\r\nHost: a\r\n\r\n", limits), 414);
    // header line of exactly 64 bytes
    std::string hdr = "X: " + big(61);
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\n" + hdr + "\r\n\r\n", limits), 0);
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\n" + hdr + "b\r\n\r\n", limits), 431);
    // exactly 3 headers, then 4
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\nB: b\r\nC: c\r\n\r\n", limits), 0);
    EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\nB: b\r\nC: c\r\nD: d\r\n\r\n", limits), 431);
    // head of exactly max_head bytes, then one more
    limits.max_headers = 10;
    std::string head = "GET / HTTP/1.1\r\nHost: a\r\nB: " + big(60) + "\r\nC: " + big(60) + "\r\n";
    head += "D: " + big(200 - head.size() - 7) + "\r\n\r\n";
    ASSERT_EQ(head.size(), 200u);
    EXPECT_EQ(status_of(head, limits), 0);
    head.insert(head.size() - 4, "x");
    EXPECT_EQ(status_of(head, limits), 431);
}

// ---------------------------------------------------------------- scanner behaviour

TEST(HeadScanner, NeedMoreUntilTerminatorThenComplete) {
    const std::string raw = "GET / HTTP/1.1\r\nHost: a\r\n\r\nbody";
    HeadScanner s(HeadLimits{});
    EXPECT_EQ(s.scan(raw.substr(0, 5)), HeadScanner::Status::NeedMore);
    EXPECT_EQ(s.scan(raw.substr(0, 26)), HeadScanner::Status::NeedMore);  // ends at "\r\n\r"
    EXPECT_EQ(s.scan(raw), HeadScanner::Status::Complete);
    EXPECT_EQ(s.head_length(), raw.size() - 4);
    EXPECT_EQ(s.scan(raw), HeadScanner::Status::Complete);  // sticky
}

TEST(HeadScanner, BytewiseMatchesOneShot) {
    const std::string raw = "\r\nPOST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
    HeadScanner s(HeadLimits{});
    ASSERT_EQ(scan_bytewise(raw, s), HeadScanner::Status::Complete);
    EXPECT_EQ(s.head_length(), raw.size() - 3);
}

TEST(HeadScanner, ResetForPipelinedRequest) {
    const std::string first = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n";
    const std::string second = "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    const std::string both = first + second;
    HeadScanner s(HeadLimits{});
    ASSERT_EQ(s.scan(both), HeadScanner::Status::Complete);
    ASSERT_EQ(s.head_length(), first.size());
    s.reset();
    std::string_view rest = std::string_view(both).substr(first.size());
    ASSERT_EQ(s.scan(rest), HeadScanner::Status::Complete);
    EXPECT_EQ(s.head_length(), second.size());
}

TEST(HeadScanner, DetectsOversizeRequestLineBeforeTerminator) {
    HeadLimits limits;
    limits.max_line = 16;
    HeadScanner s(limits);
    std::string partial = "GET /" + big(11);  // 16 bytes, no CRLF yet
    EXPECT_EQ(s.scan(partial), HeadScanner::Status::NeedMore);
    partial += "a";
    EXPECT_EQ(s.scan(partial), HeadScanner::Status::Error);
    EXPECT_EQ(s.error_status(), 414);
}

TEST(HeadScanner, DetectsOversizeHeaderAndCountBeforeTerminator) {
    HeadLimits limits;
    limits.max_line = 16;
    limits.max_headers = 1;
    {
        HeadScanner s(limits);
        EXPECT_EQ(s.scan("GET / HTTP/1.1\r\nX: " + big(14)), HeadScanner::Status::Error);
        EXPECT_EQ(s.error_status(), 431);
    }
    {
        HeadScanner s(limits);
        EXPECT_EQ(s.scan("GET / HTTP/1.1\r\nHost: a\r\nY"), HeadScanner::Status::Error);
        EXPECT_EQ(s.error_status(), 431);
    }
    {
        limits.max_line = 8192;
        limits.max_head = 40;
        HeadScanner s(limits);
        EXPECT_EQ(s.scan("GET / HTTP/1.1\r\nHost: a\r\nX: " + big(12)), HeadScanner::Status::Error);
        EXPECT_EQ(s.error_status(), 431);
    }
}

TEST(HeadScanner, EndlessLeadingCrlfsHitHeadLimit) {
    std::string raw;
    for (int i = 0; i < 20000; ++i) raw += "\r\n";
    HeadScanner s(HeadLimits{});
    EXPECT_EQ(s.scan(raw), HeadScanner::Status::Error);
    EXPECT_EQ(s.error_status(), 431);
}

// ---------------------------------------------------------------- parser robustness

TEST(ParseRequestHead, RejectsIncompleteOrTrailingBytes) {
    RequestHead h;
    EXPECT_EQ(parse_request_head("GET / HTTP/1.1\r\nHost: a\r\n", {}, h), 400);
    EXPECT_EQ(parse_request_head("GET / HTTP/1.1\r\nHost: a\r\n\r\nX", {}, h), 400);
    EXPECT_EQ(parse_request_head("", {}, h), 400);
}

TEST(ParseRequestHead, ResetsOutput) {
    RequestHead h;
    ASSERT_EQ(parse_request_head("POST /a?b HTTP/1.0\r\nContent-Length: 3\r\n\r\n", {}, h), 0);
    ASSERT_EQ(parse_request_head("GET /c HTTP/1.1\r\nHost: a\r\n\r\n", {}, h), 0);
    EXPECT_EQ(h.query, "");
    EXPECT_EQ(h.framing, BodyFraming::None);
    EXPECT_EQ(h.content_length, 0u);
    EXPECT_EQ(h.headers.size(), 1u);
    EXPECT_TRUE(h.keep_alive);
}

}  // namespace
}  // namespace tollgate::http
