// A worker's buffer of access log lines for one file (access_log buffer=SIZE flush=TIME), kept
// apart from the module so it can be unit tested with a fake EventLoop
// (tests/unit/server/test_log_format.cpp). A worker is single-threaded: the buffer and its timer
// live on the worker's loop and take no locks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "core/event_loop.hpp"
#include "core/open_file.hpp"

namespace tollgate::access_log {

class LineBuffer {
  public:
    // Called with the file and the errno when a write to it fails.
    using ErrorHandler = void (*)(const OpenFile& file, int err);

    // Allocates `capacity` bytes now. With `flush_ms` > 0, a timer on `loop` flushes the buffer
    // `flush_ms` after the first line entered it empty, so no line waits longer (as nginx).
    LineBuffer(OpenFile& file, size_t capacity, uint64_t flush_ms, EventLoop& loop,
               ErrorHandler on_error);
    LineBuffer(const LineBuffer&) = delete;
    LineBuffer& operator=(const LineBuffer&) = delete;

    // Appends `line`, first writing the pending lines when it does not fit; a line larger than
    // the whole buffer is then written on its own.
    void add(std::string_view line);
    // Writes the pending lines to the file's current fd and stops the timer.
    void flush();

    size_t pending() const { return len_; }
    const OpenFile& file() const { return file_; }

  private:
    void write(const char* data, size_t len);

    OpenFile& file_;
    size_t cap_;
    uint64_t flush_ms_;
    ErrorHandler on_error_;
    std::unique_ptr<char[]> data_;
    size_t len_ = 0;
    std::unique_ptr<Timer> timer_;  // null without flush=
};

}  // namespace tollgate::access_log
