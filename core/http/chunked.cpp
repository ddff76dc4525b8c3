#include "core/http/chunked.hpp"

#include <algorithm>
#include <limits>

namespace tollgate::http {

namespace {

constexpr uint64_t kMaxChunkSize = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

// Returns the value of a hex digit, or -1.
constexpr int hex_value(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

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

// CTL other than HTAB, and DEL: never allowed in extensions or field values.
constexpr bool is_bad_ctl(unsigned char c) {
    return (c < 0x20 && c != '\t') || c == 0x7F;
}

}  // namespace

ChunkedDecoder::ChunkedDecoder(const Limits& limits) : limits_(limits) {}

void ChunkedDecoder::reset() {
    state_ = State::SizeStart;
    size_ = 0;
    remaining_ = 0;
    body_bytes_ = 0;
    digits_ = 0;
    extension_ = 0;
    trailers_ = 0;
}

ChunkedDecoder::Step ChunkedDecoder::fail() {
    state_ = State::Error;
    return Step{Status::Error, 0, 0};
}

ChunkedDecoder::Step ChunkedDecoder::take_data(size_t framing, size_t available) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, available));
    remaining_ -= n;
    body_bytes_ += n;
    if (remaining_ == 0) state_ = State::DataCr;
    return Step{Status::NeedMore, framing, n};
}

ChunkedDecoder::Step ChunkedDecoder::next(std::string_view in) {
    if (state_ == State::Done) return Step{Status::Done, 0, 0};
    if (state_ == State::Error) return Step{Status::Error, 0, 0};
    if (state_ == State::Data) return take_data(0, in.size());

    for (size_t i = 0; i < in.size(); ++i) {
        const unsigned char c = static_cast<unsigned char>(in[i]);
        switch (state_) {
            case State::SizeStart: {
                const int d = hex_value(c);
                if (d < 0) return fail();  // empty size, sign, leading space, ...
                size_ = static_cast<uint64_t>(d);
                digits_ = 1;
                extension_ = 0;
                state_ = State::Size;
                break;
            }
            case State::Size: {
                const int d = hex_value(c);
                if (d >= 0) {
                    if (++digits_ > limits_.max_size_digits) return fail();
                    if (size_ > (kMaxChunkSize - static_cast<uint64_t>(d)) / 16) return fail();
                    size_ = size_ * 16 + static_cast<uint64_t>(d);
                } else if (c == '\r') {
                    state_ = State::SizeLf;
                } else if (c == ';' || c == ' ' || c == '\t') {
                    if (++extension_ > limits_.max_extension) return fail();
                    state_ = c == ';' ? State::Extension : State::SizeBws;
                } else {
                    return fail();  // "0x..", bare LF, garbage
                }
                break;
            }
            case State::SizeBws:
                if (++extension_ > limits_.max_extension) return fail();
                if (c == ';') {
                    state_ = State::Extension;
                } else if (c != ' ' && c != '\t') {
                    return fail();  // whitespace is only allowed before an extension
                }
                break;
            case State::Extension:
                // Extensions are ignored. CR/LF can appear in neither token nor quoted-string,
                // so the first CR ends them.
                if (c == '\r') {
                    state_ = State::SizeLf;
                } else if (is_bad_ctl(c) || ++extension_ > limits_.max_extension) {
                    return fail();
                }
                break;
            case State::SizeLf:
                if (c != '\n') return fail();
                if (size_ == 0) {
                    state_ = State::TrailerLineStart;
                    trailers_ = 0;
                    break;
                }
                remaining_ = size_;
                state_ = State::Data;
                return take_data(i + 1, in.size() - (i + 1));
            case State::DataCr:
                if (c != '\r') return fail();  // data longer than declared
                state_ = State::DataLf;
                break;
            case State::DataLf:
                if (c != '\n') return fail();
                state_ = State::SizeStart;
                break;
            case State::TrailerLineStart:
            case State::TrailerName:
            case State::TrailerValue:
            case State::TrailerLf:
            case State::FinalLf:
                if (++trailers_ > limits_.max_trailers) return fail();
                if (state_ == State::TrailerLineStart) {
                    if (c == '\r') {
                        state_ = State::FinalLf;
                    } else if (is_tchar(c)) {
                        state_ = State::TrailerName;
                    } else {
                        return fail();  // obs-fold (SP/HTAB), empty name, garbage
                    }
                } else if (state_ == State::TrailerName) {
                    if (c == ':') {
                        state_ = State::TrailerValue;
                    } else if (!is_tchar(c)) {
                        return fail();
                    }
                } else if (state_ == State::TrailerValue) {
                    if (c == '\r') {
                        state_ = State::TrailerLf;
                    } else if (is_bad_ctl(c)) {
                        return fail();
                    }
                } else if (state_ == State::TrailerLf) {
                    if (c != '\n') return fail();
                    state_ = State::TrailerLineStart;
                } else {
                    if (c != '\n') return fail();
                    state_ = State::Done;
                    return Step{Status::Done, i + 1, 0};
                }
                break;
            case State::Data:
            case State::Done:
            case State::Error:
                return fail();  // unreachable
        }
    }
    return Step{Status::NeedMore, in.size(), 0};
}

}  // namespace tollgate::http
