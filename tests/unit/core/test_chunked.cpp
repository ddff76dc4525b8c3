#include "core/http/chunked.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace tollgate::http {
namespace {

using Status = ChunkedDecoder::Status;

struct Decoded {
    Status status = Status::NeedMore;
    std::string body;
    size_t consumed = 0;  // bytes of input used (framing + data) when Done
};

// Drives the decoder over `in`, handing it at most `piece` new bytes per call (0: all at once),
// the way a connection would as bytes arrive.
Decoded decode(std::string_view in, const ChunkedDecoder::Limits& limits = {}, size_t piece = 0) {
    ChunkedDecoder d(limits);
    Decoded r;
    size_t pos = 0;
    size_t avail = piece == 0 ? in.size() : std::min(piece, in.size());
    while (true) {
        const ChunkedDecoder::Step s = d.next(in.substr(pos, avail - pos));
        EXPECT_LE(s.framing + s.data, avail - pos);
        pos += s.framing;
        r.body.append(in.substr(pos, s.data));
        pos += s.data;
        r.status = s.status;
        if (s.status != Status::NeedMore) break;
        if (pos == avail) {
            if (avail == in.size()) break;
            avail = piece == 0 ? in.size() : std::min(avail + piece, in.size());
        }
    }
    r.consumed = pos;
    EXPECT_EQ(d.body_bytes(), r.body.size());
    return r;
}

// ---------------------------------------------------------------- malformed table

struct BadChunk {
    const char* name;
    std::string body;
};

class ChunkedRejects : public ::testing::TestWithParam<BadChunk> {};

TEST_P(ChunkedRejects, ErrorWholeAndBytewise) {
    const BadChunk& c = GetParam();
    EXPECT_EQ(decode(c.body).status, Status::Error) << "whole";
    EXPECT_EQ(decode(c.body, {}, 1).status, Status::Error) << "bytewise";
}

const BadChunk kBadChunks[] = {
    {"NonHexSize", "g\r\nabc\r\n0\r\n\r\n"},
    {"EmptySize", "\r\nabc\r\n0\r\n\r\n"},
    {"PlusSign", "+3\r\nabc\r\n0\r\n\r\n"},
    {"MinusSign", "-3\r\nabc\r\n0\r\n\r\n"},
    {"HexPrefix", "0x3\r\nabc\r\n0\r\n\r\n"},
    {"LeadingSpace", " 3\r\nabc\r\n0\r\n\r\n"},
    {"TrailingSpaceWithoutExtension", "3 \r\nabc\r\n0\r\n\r\n"},
    {"TooManyDigits", "00000000000000003\r\nabc\r\n0\r\n\r\n"},
    {"Above63Bits", "8000000000000000\r\n"},
    {"AllFs", "ffffffffffffffff\r\n"},
    {"DataLongerThanDeclared", "3\r\nabcd\r\n0\r\n\r\n"},
    {"DataWithoutCrlf", "3\r\nabc0\r\n\r\n"},
    {"DataFollowedByBareLf", "3\r\nabc\n0\r\n\r\n"},
    {"BareLfAfterSize", "3\nabc\r\n0\r\n\r\n"},
    {"BareCrAfterSize", "3\rabc\r\n0\r\n\r\n"},
    {"BareLfAfterLastChunk", "0\n\r\n"},
    {"BareLfFinal", "0\r\n\n"},
    {"ExtensionWithNul", std::string("3;a=\0\r\nabc\r\n0\r\n\r\n", 18)},
    {"ExtensionWithBareLf", "3;a=b\nabc\r\n0\r\n\r\n"},
    {"ExtensionTooLong", "3;" + std::string(5000, 'a') + "\r\nabc\r\n0\r\n\r\n"},
    {"ExtensionWsWithoutSemicolon", "3 x\r\nabc\r\n0\r\n\r\n"},
    {"TrailerObsFold", "0\r\nX: a\r\n b\r\n\r\n"},
    {"TrailerStartsWithTab", "0\r\n\tX: a\r\n\r\n"},
    {"TrailerMissingColon", "0\r\nNoColon\r\n\r\n"},
    {"TrailerSpaceBeforeColon", "0\r\nX : a\r\n\r\n"},
    {"TrailerEmptyName", "0\r\n: a\r\n\r\n"},
    {"TrailerCtl", "0\r\nX: a\x01\r\n\r\n"},
    {"TrailerBareLf", "0\r\nX: a\n\r\n"},
    {"TrailerTooLarge", "0\r\nX: " + std::string(9000, 'a') + "\r\n\r\n"},
};

std::string bad_name(const ::testing::TestParamInfo<BadChunk>& info) {
    return info.param.name;
}

INSTANTIATE_TEST_SUITE_P(Strict, ChunkedRejects, ::testing::ValuesIn(kBadChunks), bad_name);

// ---------------------------------------------------------------- positive cases

TEST(Chunked, SimpleBodyWholeAndEverySplit) {
    const std::string in = "5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\nGET /next";
    for (size_t piece : {0, 1, 2, 3, 7}) {
        Decoded r = decode(in, {}, piece);
        EXPECT_EQ(r.status, Status::Done) << piece;
        EXPECT_EQ(r.body, "hello, world") << piece;
        EXPECT_EQ(r.consumed, in.size() - 9) << piece;  // "GET /next" is not consumed
    }
}

TEST(Chunked, StepShapes) {
    ChunkedDecoder d;
    // framing and data together, framing first
    ChunkedDecoder::Step s = d.next("4\r\nab");
    EXPECT_EQ(s.status, Status::NeedMore);
    EXPECT_EQ(s.framing, 3u);
    EXPECT_EQ(s.data, 2u);
    // in the middle of a chunk: framing 0, data = min(remaining, size)
    s = d.next("cdef");
    EXPECT_EQ(s.framing, 0u);
    EXPECT_EQ(s.data, 2u);
    s = d.next("\r");
    EXPECT_EQ(s.framing, 1u);
    EXPECT_EQ(s.data, 0u);
    s = d.next("\n0\r\n\r\nrest");
    EXPECT_EQ(s.status, Status::Done);
    EXPECT_EQ(s.framing, 6u);
    EXPECT_EQ(d.body_bytes(), 4u);
    // Done is sticky
    s = d.next("more");
    EXPECT_EQ(s.status, Status::Done);
    EXPECT_EQ(s.framing, 0u);
}

TEST(Chunked, EmptyInputNeedsMore) {
    ChunkedDecoder d;
    ChunkedDecoder::Step s = d.next("");
    EXPECT_EQ(s.status, Status::NeedMore);
    EXPECT_EQ(s.framing + s.data, 0u);
}

TEST(Chunked, OnlyLastChunk) {
    Decoded r = decode("0\r\n\r\n");
    EXPECT_EQ(r.status, Status::Done);
    EXPECT_EQ(r.body, "");
    EXPECT_EQ(r.consumed, 5u);
}

TEST(Chunked, HexCaseAndLeadingZeros) {
    const std::string data(0x1a, 'x');
    Decoded r = decode("1A\r\n" + data + "\r\n001a\r\n" + data + "\r\n0000\r\n\r\n");
    EXPECT_EQ(r.status, Status::Done);
    EXPECT_EQ(r.body.size(), 2 * data.size());
}

TEST(Chunked, ExtensionsIgnored) {
    const std::string in = "3;name=value\r\nabc\r\n2 ; a ;b=\"q;\\\" x\"\t\r\nde\r\n0;last\r\n\r\n";
    for (size_t piece : {0, 1}) {
        Decoded r = decode(in, {}, piece);
        EXPECT_EQ(r.status, Status::Done);
        EXPECT_EQ(r.body, "abcde");
        EXPECT_EQ(r.consumed, in.size());
    }
}

TEST(Chunked, TrailersDiscarded) {
    const std::string in = "1\r\nz\r\n0\r\nX-Sum: abc\r\nX-Other:\tv v\r\n\r\nNEXT";
    for (size_t piece : {0, 1}) {
        Decoded r = decode(in, {}, piece);
        EXPECT_EQ(r.status, Status::Done);
        EXPECT_EQ(r.body, "z");
        EXPECT_EQ(r.consumed, in.size() - 4);
    }
}

TEST(Chunked, MaximumSizeAccepted) {
    ChunkedDecoder d;
    ChunkedDecoder::Step s = d.next("7fffffffffffffff\r\nab");
    EXPECT_EQ(s.status, Status::NeedMore);
    EXPECT_EQ(s.framing, 18u);
    EXPECT_EQ(s.data, 2u);
}

TEST(Chunked, LimitsAreConfigurable) {
    ChunkedDecoder::Limits limits;
    limits.max_size_digits = 2;
    limits.max_extension = 4;
    limits.max_trailers = 12;
    EXPECT_EQ(decode("ff\r\n" + std::string(255, 'a') + "\r\n0\r\n\r\n", limits).status,
              Status::Done);
    EXPECT_EQ(decode("0ff\r\n", limits).status, Status::Error);
    EXPECT_EQ(decode("0;abc\r\n\r\n", limits).status, Status::Done);  // ";abc" = 4 bytes
    EXPECT_EQ(decode("0;abcd\r\n\r\n", limits).status, Status::Error);
    EXPECT_EQ(decode("0\r\nX: 12345\r\n\r\n", limits).status,
              Status::Done);  // 12 bytes, final CRLF included
    EXPECT_EQ(decode("0\r\nX: 123456\r\n\r\n", limits).status, Status::Error);
}

TEST(Chunked, ErrorIsStickyAndResetRecovers) {
    ChunkedDecoder d;
    EXPECT_EQ(d.next("zz").status, Status::Error);
    EXPECT_EQ(d.next("0\r\n\r\n").status, Status::Error);
    d.reset();
    ChunkedDecoder::Step s = d.next("0\r\n\r\n");
    EXPECT_EQ(s.status, Status::Done);
    EXPECT_EQ(s.framing, 5u);
    EXPECT_EQ(d.body_bytes(), 0u);
}

}  // namespace
}  // namespace tollgate::http
