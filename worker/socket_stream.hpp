// The byte stream under an HTTP connection: a non-blocking socket with an input and an output
// evbuffer. Writes go out at once and the socket's write interest is armed only when the kernel
// would block, so a response that fits costs one writev() and no epoll_ctl(). Reads go straight
// into reserved input space (no FIONREAD round trip) and stop at the read limit: that is the
// backpressure. TLS will be a second stream type behind the same handler interface.
#pragma once

#include <cstddef>
#include <cstdint>

struct event;
struct event_base;
struct evbuffer;

namespace tollgate::worker {

enum class StreamEvent : uint8_t { Eof, Error, WriteTimeout };

class StreamHandler {
  public:
    // New bytes are in input().
    virtual void on_readable() = 0;
    // Everything queued in output() has been handed to the kernel.
    virtual void on_drained() = 0;
    // The peer closed its side (Eof), the socket failed (Error), or a blocked write made no
    // progress for the write timeout.
    virtual void on_stream_event(StreamEvent e) = 0;

  protected:
    ~StreamHandler() = default;
};

class SocketStream {
  public:
    SocketStream(event_base* base, int fd, StreamHandler& handler);
    ~SocketStream();  // closes the socket
    SocketStream(const SocketStream&) = delete;
    SocketStream& operator=(const SocketStream&) = delete;

    bool ok() const { return input_ != nullptr && output_ != nullptr && read_ev_ != nullptr; }
    int fd() const { return fd_; }
    evbuffer* input() const { return input_; }
    evbuffer* output() const { return output_; }

    // Reading stops while the input holds `limit` bytes or more.
    void set_read_limit(size_t limit) { read_limit_ = limit; }
    // Starts or resumes reading (after the consumer drained input below the limit).
    void resume_reading();
    void stop_reading();
    // Writes what output() holds now; when the kernel would block, waits for writability with
    // `timeout_ms` between progress. Calls on_drained() once the output is empty (possibly
    // before returning). Returns false if the stream failed (on_stream_event was called).
    bool flush(uint64_t timeout_ms);
    // Half-closes the sending side (after the last response on a connection).
    void shutdown_write();

  private:
    static void on_read_ready(int fd, short what, void* arg);
    static void on_write_ready(int fd, short what, void* arg);
    void read_once();
    bool write_now();

    int fd_;
    StreamHandler& handler_;
    evbuffer* input_ = nullptr;
    evbuffer* output_ = nullptr;
    event* read_ev_ = nullptr;
    event* write_ev_ = nullptr;
    size_t read_limit_ = 65536;
    uint64_t write_timeout_ms_ = 60000;
    bool reading_ = false;
    bool writing_ = false;  // write interest armed
    bool eof_ = false;
};

}  // namespace tollgate::worker
