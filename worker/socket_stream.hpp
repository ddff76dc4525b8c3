// A non-blocking TCP socket as a Stream (core/stream.hpp). Writes go out at once and the write
// interest is armed only when the kernel would block, so a response that fits costs one
// writev() and no epoll_ctl(). Reads go straight into reserved input space (no FIONREAD round
// trip) and stop at the read limit: that is the backpressure. File segments in the output go
// out with sendfile().
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/stream.hpp"

struct event;
struct event_base;
struct evbuffer;

namespace tollgate::worker {

class SocketStream final : public Stream {
  public:
    // Wraps an accepted, non-blocking socket.
    SocketStream(event_base* base, int fd, StreamHandler& handler);
    // Starts a non-blocking connect to `addr`; on_connected() or on_stream_event(Error or
    // ConnectTimeout) follows from the loop. Returns nullptr (errno set) if the socket cannot
    // even be created.
    static std::unique_ptr<SocketStream> connect(event_base* base, const sockaddr* addr,
                                                 socklen_t len, StreamHandler& handler,
                                                 uint64_t timeout_ms);
    ~SocketStream() override;  // closes the socket
    SocketStream(const SocketStream&) = delete;
    SocketStream& operator=(const SocketStream&) = delete;

    bool ok() const { return input_ != nullptr && output_ != nullptr && read_ev_ != nullptr; }
    int fd() const { return fd_; }
    evbuffer* input_chain() const { return input_; }
    evbuffer* output_chain() const { return output_; }
    // The errno of the last failure reported as StreamEvent::Error.
    int last_error() const { return last_error_; }

    Buffer& input() override { return input_view_; }
    Buffer& output() override { return output_view_; }
    void set_read_limit(size_t limit) override { read_limit_ = limit; }
    void resume_reading() override;
    void stop_reading() override;
    bool flush(uint64_t timeout_ms) override;
    void shutdown_write() override;
    void set_handler(StreamHandler& handler) override { handler_ = &handler; }

  private:
    static void on_read_ready(int fd, short what, void* arg);
    static void on_write_ready(int fd, short what, void* arg);
    void read_once();
    bool write_now();
    void fail(StreamEvent e, int err);

    int fd_;
    StreamHandler* handler_;
    evbuffer* input_ = nullptr;
    evbuffer* output_ = nullptr;
    Buffer input_view_;
    Buffer output_view_;
    event* read_ev_ = nullptr;
    event* write_ev_ = nullptr;
    size_t read_limit_ = 65536;
    uint64_t write_timeout_ms_ = 60000;
    int last_error_ = 0;
    bool reading_ = false;
    bool writing_ = false;  // write interest armed
    bool connecting_ = false;
    bool eof_ = false;
};

}  // namespace tollgate::worker
