#include "worker/tls_stream.hpp"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <unordered_map>

#include "core/http/http_config.hpp"
#include "core/log.hpp"
#include "worker/socket_stream.hpp"

namespace tollgate::worker {

namespace {

// One TLS record's worth of plaintext: small output segments are joined up to this before a
// write so a response head and a small body leave in one record and one syscall.
constexpr size_t kRecord = 16384;
// The most decrypted in one read event before yielding to the loop.
constexpr size_t kReadBurst = 65536;

timeval to_timeval(uint64_t ms) {
    return timeval{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
}

// The first queued OpenSSL error as text ("wrong version number"), and the queue cleared.
const char* ssl_reason(char* buf, size_t len) {
    unsigned long e = ERR_peek_last_error();
    if (e == 0) {
        std::snprintf(buf, len, "%s", errno != 0 ? std::strerror(errno) : "unexpected EOF");
    } else {
        const char* r = ERR_reason_error_string(e);
        std::snprintf(buf, len, "%s", r != nullptr ? r : "unknown error");
    }
    ERR_clear_error();
    return buf;
}

void peer_text(int fd, char* buf, size_t len) {
    sockaddr_storage ss{};
    socklen_t sl = sizeof(ss);
    buf[0] = '\0';
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &sl) != 0) return;
    if (ss.ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr, buf, len);
    } else {
        inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, buf, len);
    }
}

void configure(SSL* ssl) {
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                          SSL_MODE_RELEASE_BUFFERS);
    // A peer that closes without close_notify reads as a plain EOF (HTTP has its own framing).
    SSL_set_options(ssl,
                    SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
}

}  // namespace

TlsStream::TlsStream(event_base* base, int fd, SSL* ssl, StreamHandler& handler)
    : fd_(fd),
      ssl_(ssl),
      handler_(&handler),
      input_(evbuffer_new()),
      output_(evbuffer_new()),
      input_view_(Buffer::borrow(input_)),
      output_view_(Buffer::borrow(output_)) {
    read_ev_ = event_new(base, fd, EV_READ | EV_PERSIST, on_read_ready, this);
    write_ev_ = event_new(base, fd, EV_WRITE | EV_PERSIST, on_write_ready, this);
    timer_ = evtimer_new(base, on_handshake_timeout, this);
}

std::unique_ptr<TlsStream> TlsStream::accept(event_base* base, int fd, SSL_CTX* ctx, void* app_data,
                                             uint64_t handshake_timeout_ms,
                                             StreamHandler& handler) {
    SSL* ssl = SSL_new(ctx);
    if (ssl == nullptr || SSL_set_fd(ssl, fd) != 1) {
        char reason[160];
        LOG_ERROR("SSL_new() failed (%s)", ssl_reason(reason, sizeof(reason)));
        if (ssl != nullptr) SSL_free(ssl);
        ::close(fd);
        return nullptr;
    }
    configure(ssl);
    SSL_set_app_data(ssl, app_data);
    SSL_set_accept_state(ssl);
    std::unique_ptr<TlsStream> s(new TlsStream(base, fd, ssl, handler));
    if (s->input_ == nullptr || s->output_ == nullptr || s->read_ev_ == nullptr ||
        s->write_ev_ == nullptr || s->timer_ == nullptr) {
        return nullptr;
    }
    s->state_ = State::Handshake;
    timeval tv = to_timeval(handshake_timeout_ms);
    evtimer_add(s->timer_, &tv);
    // The ClientHello usually arrives with the connection: wait for it on the loop.
    s->read_armed_ = true;
    event_add(s->read_ev_, nullptr);
    return s;
}

// ---- client sessions: the last session per (context, peer, name), per worker --------------

namespace {

constexpr size_t kMaxClientSessions = 256;

std::unordered_map<std::string, SSL_SESSION*>& client_sessions() {
    static std::unordered_map<std::string, SSL_SESSION*> sessions;
    return sessions;
}

int session_key_index() {
    static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

// OpenSSL hands every new client session here (after the handshake in TLS 1.2, with each
// NewSessionTicket in TLS 1.3); the last one per key is kept.
int on_client_session(SSL* ssl, SSL_SESSION* sess) {
    auto* key = static_cast<const std::string*>(SSL_get_ex_data(ssl, session_key_index()));
    if (key == nullptr) return 0;
    auto& map = client_sessions();
    auto it = map.find(*key);
    if (it != map.end()) {
        SSL_SESSION_free(it->second);
        it->second = sess;
        return 1;  // we keep the reference
    }
    if (map.size() >= kMaxClientSessions) {
        SSL_SESSION_free(map.begin()->second);
        map.erase(map.begin());
    }
    map.emplace(*key, sess);
    return 1;
}

}  // namespace

std::unique_ptr<TlsStream> TlsStream::connect(event_base* base, const sockaddr* addr, socklen_t len,
                                              const TlsClientOptions& tls, StreamHandler& handler,
                                              uint64_t timeout_ms) {
    auto* ctx = static_cast<SSL_CTX*>(tls.ssl_ctx);
    if (ctx == nullptr) return nullptr;
    if (tls.reuse_session && SSL_CTX_sess_get_new_cb(ctx) != on_client_session) {
        // The context is the module's, built in the master; this worker's copy learns to hand
        // its sessions to the worker's store (a per-process setting, made once).
        SSL_CTX_set_session_cache_mode(ctx,
                                       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, on_client_session);
    }
    int fd = ::socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return nullptr;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    SSL* ssl = SSL_new(ctx);
    if (ssl == nullptr || SSL_set_fd(ssl, fd) != 1) {
        if (ssl != nullptr) SSL_free(ssl);
        ERR_clear_error();
        ::close(fd);
        errno = ENOMEM;
        return nullptr;
    }
    configure(ssl);
    SSL_set_connect_state(ssl);
    std::string sni(tls.server_name);
    in6_addr literal;
    // RFC 6066 (and nginx): no SNI for an IP address literal.
    bool sni_is_ip = inet_pton(AF_INET, sni.c_str(), &literal) == 1 ||
                     inet_pton(AF_INET6, sni.c_str(), &literal) == 1;
    if (!sni.empty() && !sni_is_ip) SSL_set_tlsext_host_name(ssl, sni.c_str());
    if (!tls.verify_name.empty()) {
        std::string name(tls.verify_name);
        in6_addr ip;
        X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
        if (inet_pton(AF_INET, name.c_str(), &ip) == 1 ||
            inet_pton(AF_INET6, name.c_str(), &ip) == 1) {
            X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
        } else {
            X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size());
        }
    }
    std::unique_ptr<TlsStream> s(new TlsStream(base, fd, ssl, handler));
    if (s->input_ == nullptr || s->output_ == nullptr || s->read_ev_ == nullptr ||
        s->write_ev_ == nullptr || s->timer_ == nullptr) {
        errno = ENOMEM;
        return nullptr;
    }
    if (tls.reuse_session) {
        s->session_key_.reserve(64);
        s->session_key_.append(reinterpret_cast<const char*>(&ctx), sizeof(ctx));
        s->session_key_.append(reinterpret_cast<const char*>(addr), len);
        s->session_key_ += sni;
        SSL_set_ex_data(ssl, session_key_index(), &s->session_key_);
        auto it = client_sessions().find(s->session_key_);
        if (it != client_sessions().end()) SSL_set_session(ssl, it->second);
    }
    s->client_ = true;
    s->state_ = State::Connecting;
    if (::connect(fd, addr, len) != 0 && errno != EINPROGRESS) {
        // Reported from the loop (SO_ERROR) like any other failure, so callers have one path.
    }
    // Connect and handshake share the connect timeout (as proxy_connect_timeout in nginx).
    timeval tv = to_timeval(timeout_ms);
    evtimer_add(s->timer_, &tv);
    s->write_armed_ = true;
    event_add(s->write_ev_, nullptr);
    return s;
}

TlsStream::~TlsStream() {
    if (state_ == State::Open && !shut_) {
        // Best effort: close_notify if the socket takes it now; never wait.
        SSL_set_quiet_shutdown(ssl_, 0);
        (void)SSL_shutdown(ssl_);
    }
    ERR_clear_error();
    if (read_ev_ != nullptr) event_free(read_ev_);
    if (write_ev_ != nullptr) event_free(write_ev_);
    if (timer_ != nullptr) event_free(timer_);
    if (input_ != nullptr) evbuffer_free(input_);
    if (output_ != nullptr) evbuffer_free(output_);
    SSL_free(ssl_);
    ::close(fd_);
}

void TlsStream::fail(StreamEvent e, const char* what) {
    if (what != nullptr) {
        char reason[160];
        char peer[64];
        peer_text(fd_, peer, sizeof(peer));
        ssl_reason(reason, sizeof(reason));
        LOG_INFO("%s failed (%s) while SSL handshaking, %s: %s", what, reason,
                 client_ ? "upstream" : "client", peer);
    }
    ERR_clear_error();
    state_ = State::Failed;
    evtimer_del(timer_);
    if (read_armed_) event_del(read_ev_);
    if (write_armed_) event_del(write_ev_);
    read_armed_ = write_armed_ = false;
    reading_ = false;
    handler_->on_stream_event(e);
}

void TlsStream::on_handshake_timeout(int, short, void* arg) {
    auto* self = static_cast<TlsStream*>(arg);
    char peer[64];
    peer_text(self->fd_, peer, sizeof(peer));
    LOG_INFO("SSL handshake timed out, %s: %s", self->client_ ? "upstream" : "client", peer);
    self->fail(self->client_ ? StreamEvent::ConnectTimeout : StreamEvent::Error, nullptr);
}

// A plain HTTP request on the TLS port: tell the client in plain HTTP (as nginx's 497 → 400
// does) instead of a TLS alert it cannot read, then fail the stream.
void TlsStream::answer_plain_http() {
    static constexpr std::string_view kBody =
        "{\"error\":\"bad_request\",\"message\":\"The plain HTTP request was sent to HTTPS "
        "port\",\"status\":400}";
    char answer[512];
    int len = std::snprintf(answer, sizeof(answer),
                            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                            "Content-Length: %zu\r\nConnection: close\r\n\r\n%.*s",
                            kBody.size(), static_cast<int>(kBody.size()), kBody.data());
    // Drop what the client already sent so closing does not reset the answer away.
    char sink[4096];
    for (int i = 0; i < 16 && ::recv(fd_, sink, sizeof(sink), MSG_DONTWAIT) > 0; ++i) {
    }
    (void)::send(fd_, answer, static_cast<size_t>(len), MSG_DONTWAIT | MSG_NOSIGNAL);
    ::shutdown(fd_, SHUT_WR);
}

void TlsStream::handshake() {
    ERR_clear_error();
    int rc = SSL_do_handshake(ssl_);
    if (rc == 1) {
        state_ = State::Open;
        evtimer_del(timer_);
        if (write_armed_) {
            event_del(write_ev_);
            write_armed_ = false;
        }
        if (read_armed_) {
            event_del(read_ev_);
            read_armed_ = false;
        }
        if (client_) {
            handler_->on_connected();  // may write and flush, or drop this stream
            return;
        }
        if (reading_) {
            reading_ = false;
            resume_reading();  // from the loop: nothing is called back from here
        }
        if (flush_pending_) {
            flush_pending_ = false;
            flush(write_timeout_ms_);  // last: on_drained() may drop this stream
        }
        return;
    }
    int err = SSL_get_error(ssl_, rc);
    if (err == SSL_ERROR_WANT_READ) {
        if (write_armed_) {
            event_del(write_ev_);
            write_armed_ = false;
        }
        if (!read_armed_) {
            read_armed_ = true;
            event_add(read_ev_, nullptr);
        }
        return;
    }
    if (err == SSL_ERROR_WANT_WRITE) {
        if (read_armed_) {
            event_del(read_ev_);
            read_armed_ = false;
        }
        if (!write_armed_) {
            write_armed_ = true;
            event_add(write_ev_, nullptr);
        }
        return;
    }
    unsigned long e = ERR_peek_last_error();
    if (!client_ && ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_HTTP_REQUEST) {
        answer_plain_http();
    }
    fail(StreamEvent::Error, "SSL_do_handshake()");
}

void TlsStream::on_read_ready(int, short, void* arg) {
    auto* self = static_cast<TlsStream*>(arg);
    switch (self->state_) {
        case State::Handshake:
            self->handshake();
            return;
        case State::Open:
            break;
        default:
            return;
    }
    if (self->write_wants_read_) {
        self->write_wants_read_ = false;
        self->flush(self->write_timeout_ms_);  // last: on_drained() may drop this stream
        return;
    }
    if (self->reading_ || self->read_wants_write_)
        self->read_some();
    else
        self->update_read_interest();
}

void TlsStream::on_write_ready(int, short what, void* arg) {
    auto* self = static_cast<TlsStream*>(arg);
    switch (self->state_) {
        case State::Connecting: {
            int err = 0;
            socklen_t len = sizeof(err);
            getsockopt(self->fd_, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err != 0) {
                errno = err;
                self->fail(StreamEvent::Error, nullptr);
                return;
            }
            self->state_ = State::Handshake;
            self->handshake();
            return;
        }
        case State::Handshake:
            self->handshake();
            return;
        case State::Open:
            break;
        default:
            return;
    }
    if ((what & EV_TIMEOUT) != 0) {
        self->fail(StreamEvent::WriteTimeout, nullptr);
        return;
    }
    if (self->read_wants_write_) {
        self->read_wants_write_ = false;
        self->read_some();  // may free the handler; the stream stays until the handler drops it
        return;
    }
    self->flush(self->write_timeout_ms_);
}

void TlsStream::update_read_interest() {
    bool want =
        state_ == State::Open &&
        ((reading_ && !eof_ && evbuffer_get_length(input_) < read_limit_) || write_wants_read_);
    // Asks libevent rather than trusting the flag alone: a large TLS upload stalled with the
    // flag set but the event no longer pending (root cause in the event_active() path not
    // pinned down; test_large_upload_streams_through_tls_to_upstream covers it).
    read_armed_ = event_pending(read_ev_, EV_READ, nullptr) != 0;
    if (want && !read_armed_) {
        read_armed_ = true;
        event_add(read_ev_, nullptr);
    } else if (!want && read_armed_) {
        read_armed_ = false;
        event_del(read_ev_);
    }
}

void TlsStream::resume_reading() {
    if (state_ == State::Failed) return;
    if (state_ != State::Open) {
        reading_ = true;  // once the handshake completes
        return;
    }
    if (eof_ || evbuffer_get_length(input_) >= read_limit_) {
        reading_ = !eof_;
        update_read_interest();
        return;
    }
    reading_ = true;
    update_read_interest();
    // Bytes OpenSSL already holds (a record read past the limit) will not wake the socket:
    // read them from the loop.
    if (SSL_pending(ssl_) > 0 || SSL_has_pending(ssl_) == 1) event_active(read_ev_, EV_READ, 1);
}

void TlsStream::stop_reading() {
    reading_ = false;
    update_read_interest();
}

void TlsStream::read_some() {
    size_t got = 0;
    bool eof = false;
    while (evbuffer_get_length(input_) < read_limit_ && got < kReadBurst) {
        size_t want = std::min(kRecord, read_limit_ - evbuffer_get_length(input_));
        evbuffer_iovec vec;
        if (evbuffer_reserve_space(input_, static_cast<ev_ssize_t>(want), &vec, 1) < 1) {
            fail(StreamEvent::Error, nullptr);
            return;
        }
        ERR_clear_error();
        int n = SSL_read(ssl_, vec.iov_base, static_cast<int>(std::min(want, vec.iov_len)));
        if (n > 0) {
            vec.iov_len = static_cast<size_t>(n);
            evbuffer_commit_space(input_, &vec, 1);
            got += static_cast<size_t>(n);
            continue;
        }
        evbuffer_commit_space(input_, &vec, 0);
        int err = SSL_get_error(ssl_, n);
        if (err == SSL_ERROR_WANT_READ) break;
        if (err == SSL_ERROR_WANT_WRITE) {
            read_wants_write_ = true;
            if (!write_armed_) {
                write_armed_ = true;
                timeval tv = to_timeval(write_timeout_ms_);
                event_add(write_ev_, &tv);
            }
            break;
        }
        if (err == SSL_ERROR_ZERO_RETURN) {
            eof = true;
            break;
        }
        if (err == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EINTR)) break;
        char reason[160];
        LOG_INFO("SSL_read() failed (%s)", ssl_reason(reason, sizeof(reason)));
        if (got > 0) {
            // Hand over what was decrypted first; the error is seen again on the next read.
            break;
        }
        fail(StreamEvent::Error, nullptr);
        return;
    }
    if (eof && got == 0) {
        eof_ = true;
        reading_ = false;
        update_read_interest();
        handler_->on_stream_event(StreamEvent::Eof);
        return;
    }
    update_read_interest();
    if (got > 0) {
        // More may be decrypted already (a burst past kReadBurst), or the EOF must follow the
        // data: come back from the loop. The event is cancelled if the handler drops the stream.
        if (eof || (reading_ && (SSL_pending(ssl_) > 0 || SSL_has_pending(ssl_) == 1))) {
            event_active(read_ev_, EV_READ, 1);
        }
        handler_->on_readable();
    }
}

bool TlsStream::write_now() {
    for (;;) {
        size_t len = evbuffer_get_length(output_);
        if (len == 0) return true;
        evbuffer_iovec vec;
        if (evbuffer_peek(output_, -1, nullptr, &vec, 1) < 1) return true;
        const void* data = vec.iov_base;
        size_t n = vec.iov_len;
        if (n < kRecord && len > n) {
            n = std::min(len, kRecord);
            data = evbuffer_pullup(output_, static_cast<ev_ssize_t>(n));
            if (data == nullptr) return false;
        }
        n = std::min<size_t>(n, 1u << 30);
        ERR_clear_error();
        int rc = SSL_write(ssl_, data, static_cast<int>(n));
        if (rc > 0) {
            evbuffer_drain(output_, static_cast<size_t>(rc));
            continue;
        }
        int err = SSL_get_error(ssl_, rc);
        if (err == SSL_ERROR_WANT_WRITE) {
            write_blocked_ = true;
            return true;
        }
        if (err == SSL_ERROR_WANT_READ) {
            write_wants_read_ = true;
            return true;
        }
        if (err == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EINTR)) {
            write_blocked_ = true;
            return true;
        }
        char reason[160];
        LOG_INFO("SSL_write() failed (%s)", ssl_reason(reason, sizeof(reason)));
        return false;
    }
}

bool TlsStream::flush(uint64_t timeout_ms) {
    write_timeout_ms_ = timeout_ms;
    if (state_ == State::Failed) return false;
    if (state_ != State::Open) {
        flush_pending_ = true;  // written once the handshake completes
        return true;
    }
    write_blocked_ = false;
    if (!write_now()) {
        fail(StreamEvent::Error, nullptr);
        return false;
    }
    if (evbuffer_get_length(output_) == 0) {
        if (write_armed_ && !read_wants_write_) {
            write_armed_ = false;
            event_del(write_ev_);
        }
        handler_->on_drained();
        return true;
    }
    if (write_wants_read_) {
        update_read_interest();
        return true;
    }
    timeval tv = to_timeval(timeout_ms);
    write_armed_ = true;
    event_add(write_ev_, &tv);  // also re-arms the timeout after progress
    return true;
}

void TlsStream::shutdown_write() {
    if (state_ == State::Open && !shut_) {
        shut_ = true;
        ERR_clear_error();
        (void)SSL_shutdown(ssl_);  // sends close_notify; the peer's reply is not awaited
        ERR_clear_error();
    }
    ::shutdown(fd_, SHUT_WR);
}

std::unique_ptr<Stream> make_accepted_stream(event_base* base, int fd, const http::Listen& listen,
                                             StreamHandler& handler) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (listen.tls_ctx != nullptr) {
        return TlsStream::accept(base, fd, static_cast<SSL_CTX*>(listen.tls_ctx),
                                 const_cast<http::Listen*>(&listen),
                                 listen.tls_handshake_timeout_ms, handler);
    }
    auto s = std::make_unique<SocketStream>(base, fd, handler);
    if (!s->ok()) return nullptr;
    return s;
}

void* tls_session(Stream& stream) {
    auto* t = dynamic_cast<TlsStream*>(&stream);
    return t != nullptr ? t->ssl() : nullptr;
}

}  // namespace tollgate::worker
