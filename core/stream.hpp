// A byte stream (a TCP socket now, TLS later) as the HTTP layers see it: an input and an output
// Buffer, read interest with a limit (backpressure), and writes that report when they drained.
// The HTTP codec on top never knows which transport it has.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/buffer.hpp"

namespace tollgate {

enum class StreamEvent : uint8_t {
    Eof,             // the peer closed its side
    Error,           // the socket failed (reset, refused, ...)
    WriteTimeout,    // a blocked write made no progress for the write timeout
    ConnectTimeout,  // an outgoing connect did not complete in time
};

class StreamHandler {
  public:
    // An outgoing connect completed.
    virtual void on_connected() {}
    // New bytes are in input().
    virtual void on_readable() = 0;
    // Everything queued in output() has been handed to the kernel.
    virtual void on_drained() = 0;
    virtual void on_stream_event(StreamEvent e) = 0;

  protected:
    ~StreamHandler() = default;
};

class Stream {
  public:
    virtual ~Stream() = default;  // closes the transport
    virtual Buffer& input() = 0;
    virtual Buffer& output() = 0;
    // Reading stops while the input holds `limit` bytes or more.
    virtual void set_read_limit(size_t limit) = 0;
    // Starts or resumes reading (after the consumer drained input below the limit).
    virtual void resume_reading() = 0;
    virtual void stop_reading() = 0;
    // Writes what output() holds; when the kernel would block, waits with `timeout_ms` between
    // progress. Calls on_drained() once the output is empty (possibly before returning, in which
    // case the handler may already be gone: call it last). Returns false if the stream failed.
    virtual bool flush(uint64_t timeout_ms) = 0;
    virtual void shutdown_write() = 0;
    // Points events at another handler (a pooled upstream connection changes owners).
    virtual void set_handler(StreamHandler& handler) = 0;
};

}  // namespace tollgate
