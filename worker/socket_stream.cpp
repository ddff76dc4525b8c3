#include "worker/socket_stream.hpp"

#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace tollgate::worker {

namespace {
// The most read in one readv(): big enough for a pipelined burst, small enough to stay in cache.
// A little under 16 KiB: libevent rounds a new block (bytes plus its chain header) up to a power
// of two, so asking for 16 KiB exactly would allocate 32 KiB per read into an empty buffer.
constexpr size_t kReadChunk = 16384 - 256;

timeval to_timeval(uint64_t ms) {
    return timeval{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
}
}  // namespace

SocketStream::SocketStream(event_base* base, int fd, StreamHandler& handler)
    : fd_(fd),
      handler_(&handler),
      input_(evbuffer_new()),
      output_(evbuffer_new()),
      input_view_(Buffer::borrow(input_)),
      output_view_(Buffer::borrow(output_)) {
    // Lets evbuffer_write() hand file segments to sendfile() instead of mapping and copying them.
    if (output_ != nullptr) evbuffer_set_flags(output_, EVBUFFER_FLAG_DRAINS_TO_FD);
    read_ev_ = event_new(base, fd, EV_READ | EV_PERSIST, on_read_ready, this);
    write_ev_ = event_new(base, fd, EV_WRITE | EV_PERSIST, on_write_ready, this);
}

std::unique_ptr<SocketStream> SocketStream::connect(event_base* base, const sockaddr* addr,
                                                    socklen_t len, StreamHandler& handler,
                                                    uint64_t timeout_ms) {
    int fd = ::socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return nullptr;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto s = std::make_unique<SocketStream>(base, fd, handler);
    s->connecting_ = true;
    if (::connect(fd, addr, len) != 0 && errno != EINPROGRESS) {
        // Reported from the loop like any other failure, so callers have one path.
        s->last_error_ = errno;
    }
    s->write_timeout_ms_ = timeout_ms;
    timeval tv = to_timeval(timeout_ms);
    s->writing_ = true;
    event_add(s->write_ev_, &tv);
    return s;
}

SocketStream::~SocketStream() {
    if (read_ev_ != nullptr) event_free(read_ev_);
    if (write_ev_ != nullptr) event_free(write_ev_);
    if (input_ != nullptr) evbuffer_free(input_);
    if (output_ != nullptr) evbuffer_free(output_);
    ::close(fd_);
}

void SocketStream::resume_reading() {
    if (reading_ || eof_ || connecting_ || evbuffer_get_length(input_) >= read_limit_) return;
    reading_ = true;
    event_add(read_ev_, nullptr);
}

void SocketStream::stop_reading() {
    if (!reading_) return;
    reading_ = false;
    event_del(read_ev_);
}

void SocketStream::fail(StreamEvent e, int err) {
    last_error_ = err;
    stop_reading();
    if (writing_) {
        writing_ = false;
        event_del(write_ev_);
    }
    handler_->on_stream_event(e);
}

void SocketStream::on_read_ready(int, short, void* arg) {
    static_cast<SocketStream*>(arg)->read_once();
}

void SocketStream::read_once() {
    size_t have = evbuffer_get_length(input_);
    if (have >= read_limit_) {
        stop_reading();
        return;
    }
    size_t want = std::min(kReadChunk, read_limit_ - have);
    evbuffer_iovec vec[2];
    int n = evbuffer_reserve_space(input_, static_cast<ev_ssize_t>(want), vec, 2);
    if (n <= 0) {
        fail(StreamEvent::Error, ENOMEM);
        return;
    }
    iovec iov[2];
    size_t room = 0;
    for (int i = 0; i < n; ++i) {
        iov[i].iov_base = vec[i].iov_base;
        iov[i].iov_len = std::min(vec[i].iov_len, want - room);
        room += iov[i].iov_len;
    }
    ssize_t got = ::readv(fd_, iov, n);
    if (got < 0) {
        evbuffer_commit_space(input_, vec, 0);
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        fail(StreamEvent::Error, errno);
        return;
    }
    if (got == 0) {
        evbuffer_commit_space(input_, vec, 0);
        eof_ = true;
        stop_reading();
        handler_->on_stream_event(StreamEvent::Eof);
        return;
    }
    size_t left = static_cast<size_t>(got);
    for (int i = 0; i < n; ++i) {
        vec[i].iov_len = std::min(iov[i].iov_len, left);
        left -= vec[i].iov_len;
    }
    evbuffer_commit_space(input_, vec, n);
    if (evbuffer_get_length(input_) >= read_limit_) stop_reading();
    handler_->on_readable();
}

bool SocketStream::write_now() {
    while (evbuffer_get_length(output_) > 0) {
        int n = evbuffer_write(output_, fd_);  // writev(), or sendfile() for file segments
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return true;
            last_error_ = errno;
            return false;
        }
        if (n == 0) return true;
    }
    return true;
}

bool SocketStream::flush(uint64_t timeout_ms) {
    write_timeout_ms_ = timeout_ms;
    if (connecting_) return true;  // written once the connect completes
    if (!write_now()) {
        fail(StreamEvent::Error, last_error_);
        return false;
    }
    if (evbuffer_get_length(output_) == 0) {
        if (writing_) {
            writing_ = false;
            event_del(write_ev_);
        }
        handler_->on_drained();
        return true;
    }
    timeval tv = to_timeval(timeout_ms);
    writing_ = true;
    event_add(write_ev_, &tv);  // also re-arms the timeout after progress
    return true;
}

void SocketStream::on_write_ready(int, short what, void* arg) {
    auto* self = static_cast<SocketStream*>(arg);
    if (self->connecting_) {
        if ((what & EV_TIMEOUT) != 0) {
            self->fail(StreamEvent::ConnectTimeout, ETIMEDOUT);
            return;
        }
        int err = self->last_error_;
        socklen_t len = sizeof(err);
        if (err == 0) getsockopt(self->fd_, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            self->fail(StreamEvent::Error, err);
            return;
        }
        self->connecting_ = false;
        self->writing_ = false;
        event_del(self->write_ev_);
        self->handler_->on_connected();
        return;
    }
    if ((what & EV_TIMEOUT) != 0) {
        self->fail(StreamEvent::WriteTimeout, ETIMEDOUT);
        return;
    }
    self->flush(self->write_timeout_ms_);
}

void SocketStream::shutdown_write() {
    ::shutdown(fd_, SHUT_WR);
}

}  // namespace tollgate::worker
