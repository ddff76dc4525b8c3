// libFuzzer target for ChunkedDecoder.
//
// Input: byte 0 picks the feeding step (low 7 bits + 1) and tight limits (high bit); the rest is
// the body stream. Decodes it in one go and piecewise and checks both give the same body, the
// same verdict and the same number of consumed bytes, and that no Step over-reads its input.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/http/chunked.hpp"

using tollgate::http::ChunkedDecoder;

namespace {

void check(bool ok) {
    if (!ok) __builtin_trap();
}

struct Result {
    ChunkedDecoder::Status status = ChunkedDecoder::Status::NeedMore;
    std::string body;
    size_t consumed = 0;
    uint64_t body_bytes = 0;
};

Result run(std::string_view in, const ChunkedDecoder::Limits& limits, size_t step) {
    ChunkedDecoder decoder(limits);
    Result r;
    size_t pos = 0;
    size_t avail = std::min(step, in.size());
    while (true) {
        const std::string_view window = in.substr(pos, avail - pos);
        const ChunkedDecoder::Step s = decoder.next(window);
        check(s.framing <= window.size() && s.data <= window.size() - s.framing);
        if (s.status == ChunkedDecoder::Status::Error) check(s.framing == 0 && s.data == 0);
        if (s.status == ChunkedDecoder::Status::Done) check(s.data == 0);
        pos += s.framing;
        r.body.append(in.substr(pos, s.data));
        pos += s.data;
        r.status = s.status;
        if (s.status != ChunkedDecoder::Status::NeedMore) break;
        if (s.framing == 0 && s.data == 0 && !window.empty()) check(false);  // no progress
        if (pos == avail) {
            if (avail == in.size()) break;
            avail = std::min(in.size(), avail + step);
        }
    }
    r.consumed = pos;
    r.body_bytes = decoder.body_bytes();
    check(r.body_bytes == r.body.size());
    // Done and Error are sticky.
    if (r.status != ChunkedDecoder::Status::NeedMore) {
        const ChunkedDecoder::Step again = decoder.next(in.substr(pos));
        check(again.status == r.status && again.framing == 0 && again.data == 0);
    }
    return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const uint8_t control = data[0];
    const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);

    ChunkedDecoder::Limits limits;
    if (control & 0x80) {
        limits.max_size_digits = 3;
        limits.max_extension = 8;
        limits.max_trailers = 24;
    }
    const Result whole = run(in, limits, in.size() == 0 ? 1 : in.size());
    const Result pieces = run(in, limits, (control & 0x7F) + 1);
    check(whole.status == pieces.status);
    check(whole.body == pieces.body);
    if (whole.status != ChunkedDecoder::Status::Error) check(whole.consumed == pieces.consumed);
    return 0;
}
