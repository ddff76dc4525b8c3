#include "modules/access_log/log_buffer.hpp"

#include <cerrno>
#include <cstring>

namespace tollgate::access_log {

LineBuffer::LineBuffer(OpenFile& file, size_t capacity, uint64_t flush_ms, EventLoop& loop,
                       ErrorHandler on_error)
    : file_(file),
      cap_(capacity),
      flush_ms_(flush_ms),
      on_error_(on_error),
      data_(std::make_unique<char[]>(capacity)) {
    if (flush_ms_ != 0) timer_ = loop.make_timer([this] { flush(); });
}

void LineBuffer::add(std::string_view line) {
    if (line.size() > cap_ - len_) flush();
    if (line.size() > cap_) {
        write(line.data(), line.size());
        return;
    }
    if (len_ == 0 && timer_) timer_->start(flush_ms_);
    std::memcpy(data_.get() + len_, line.data(), line.size());
    len_ += line.size();
}

void LineBuffer::flush() {
    if (timer_) timer_->stop();
    if (len_ == 0) return;
    size_t len = len_;
    len_ = 0;
    write(data_.get(), len);
}

void LineBuffer::write(const char* data, size_t len) {
    if (!file_.write(data, len) && on_error_ != nullptr) on_error_(file_, errno);
}

}  // namespace tollgate::access_log
