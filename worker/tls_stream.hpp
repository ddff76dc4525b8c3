// A TLS connection as a Stream (core/stream.hpp), so the HTTP codec above it never knows whether
// it speaks plain TCP or TLS (and HTTP/2 via ALPN can later sit on the same stream).
//
// OpenSSL drives the non-blocking socket itself (a socket BIO, as nginx does) and libevent only
// reports readiness: decrypted bytes are read straight into reserved input space and encrypted
// from the output chain, with small segments coalesced into one record per write. This is the
// same write-at-once, arm-write-interest-only-when-blocked design as SocketStream; libevent's
// bufferevent_openssl would bring back the bufferevent layer SocketStream replaced (deferred
// callbacks, watermarks, one extra copy through a bufferevent's own input/output).
//
// The handshake runs on the loop and is bounded by a timeout; it fails closed (Error) on a
// garbage ClientHello, a plain HTTP request (answered with a plain 400 first, as nginx does) or
// a stall. Renegotiation is refused and compression is off.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include <string>

#include "core/event_loop.hpp"
#include "core/stream.hpp"

struct event;
struct event_base;
struct evbuffer;
typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

namespace tollgate::http {
struct Listen;
}

namespace tollgate::worker {

class TlsStream final : public Stream {
  public:
    // Server side: wraps an accepted, non-blocking socket and starts the handshake with `ctx`;
    // `app_data` becomes the SSL's app data (the Listen, for SNI). nullptr on failure (the
    // socket is closed).
    static std::unique_ptr<TlsStream> accept(event_base* base, int fd, SSL_CTX* ctx, void* app_data,
                                             uint64_t handshake_timeout_ms, StreamHandler& handler);
    // Client side (upstreams): a non-blocking connect, then a handshake as `tls` says (SNI,
    // certificate name check, session resumption from this worker's last session with the same
    // context, peer and name). on_connected() follows once the handshake completed; a failed
    // one reports Error, a slow one ConnectTimeout. nullptr when no socket could be made.
    static std::unique_ptr<TlsStream> connect(event_base* base, const sockaddr* addr, socklen_t len,
                                              const TlsClientOptions& tls, StreamHandler& handler,
                                              uint64_t timeout_ms);
    ~TlsStream() override;  // sends close_notify when it can, frees the SSL, closes the socket
    TlsStream(const TlsStream&) = delete;
    TlsStream& operator=(const TlsStream&) = delete;

    SSL* ssl() const { return ssl_; }
    int fd() const { return fd_; }

    Buffer& input() override { return input_view_; }
    Buffer& output() override { return output_view_; }
    void set_read_limit(size_t limit) override { read_limit_ = limit; }
    void resume_reading() override;
    void stop_reading() override;
    bool flush(uint64_t timeout_ms) override;
    void shutdown_write() override;
    void set_handler(StreamHandler& handler) override { handler_ = &handler; }

  private:
    enum class State : uint8_t { Connecting, Handshake, Open, Failed };
    TlsStream(event_base* base, int fd, SSL* ssl, StreamHandler& handler);
    static void on_read_ready(int fd, short what, void* arg);
    static void on_write_ready(int fd, short what, void* arg);
    static void on_handshake_timeout(int fd, short what, void* arg);
    void handshake();
    void read_some();
    // Writes what the output holds. Returns false on a failure.
    bool write_now();
    void update_read_interest();
    void fail(StreamEvent e, const char* what);
    void answer_plain_http();

    int fd_;
    SSL* ssl_;
    StreamHandler* handler_;
    evbuffer* input_ = nullptr;
    evbuffer* output_ = nullptr;
    Buffer input_view_;
    Buffer output_view_;
    event* read_ev_ = nullptr;
    event* write_ev_ = nullptr;
    event* timer_ = nullptr;  // the handshake (or connect) deadline
    size_t read_limit_ = 65536;
    uint64_t write_timeout_ms_ = 60000;
    State state_ = State::Handshake;
    bool client_ = false;
    bool reading_ = false;           // the consumer wants input
    bool read_armed_ = false;        // read_ev_ is added
    bool write_armed_ = false;       // write_ev_ is added
    bool write_blocked_ = false;     // output waits for the socket
    bool write_wants_read_ = false;  // SSL_write needs the peer's bytes first
    bool read_wants_write_ = false;  // SSL_read needs to send first
    bool flush_pending_ = false;     // flush() asked during the handshake
    bool eof_ = false;
    bool shut_ = false;        // close_notify sent
    std::string session_key_;  // client: where this worker keeps its session for reuse
};

// The stream for an accepted socket: TLS when the listen has a TLS context (listen ... ssl), plain
// TCP otherwise. nullptr on failure (the socket is closed).
std::unique_ptr<Stream> make_accepted_stream(event_base* base, int fd, const http::Listen& listen,
                                             StreamHandler& handler);

// The SSL* of a TLS stream, for ConnectionInfo::tls; nullptr for any other stream.
void* tls_session(Stream& stream);

}  // namespace tollgate::worker
