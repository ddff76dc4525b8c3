// What a module may ask of its worker's event loop, without including libevent: timers now,
// outgoing connections once the proxy needs them. The worker implements it (worker/worker.cpp)
// and hands it to Module::init_worker; tests can hand a fake.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/redis.hpp"
#include "core/stream.hpp"

namespace tollgate {

class Timer {
  public:
    virtual ~Timer() = default;
    // Fires the callback once after `ms` milliseconds; starting a running timer re-arms it.
    virtual void start(uint64_t ms) = 0;
    virtual void stop() = 0;
    virtual bool running() const = 0;
};

// An asynchronous DNS resolver (A, and AAAA when asked) over given name servers.
class Resolver {
  public:
    struct Answer {
        bool ok = false;
        std::string error;                        // why not, when !ok ("NXDOMAIN", "timeout", ...)
        std::vector<sockaddr_storage> addresses;  // port 0
        uint32_t ttl = 0;                         // seconds, the smallest of the records
    };
    // Cancels the lookup when destroyed before it completed.
    class Lookup {
      public:
        virtual ~Lookup() = default;
    };
    virtual ~Resolver() = default;
    // Looks `host` up; `done` runs once, from the loop, unless the returned handle is destroyed
    // first.
    virtual std::unique_ptr<Lookup> lookup(const std::string& host,
                                           std::function<void(const Answer&)> done) = 0;
};

// How an outgoing connection speaks TLS (EventLoop::connect_tls).
struct TlsClientOptions {
    void* ssl_ctx = nullptr;       // an OpenSSL SSL_CTX* (client), built by the caller at load
    std::string_view server_name;  // SNI; empty: none
    std::string_view verify_name;  // the host name the certificate must match; empty: none
    bool reuse_session = true;     // resume the last session made with this context and peer
};

class EventLoop {
  public:
    virtual ~EventLoop() = default;
    // A stopped timer that runs `on_fire` on the loop when it expires.
    virtual std::unique_ptr<Timer> make_timer(std::function<void()> on_fire) = 0;
    // Starts a non-blocking TCP connect; `handler` then gets on_connected() or
    // on_stream_event(Error or ConnectTimeout). Returns nullptr if no socket could be made.
    virtual std::unique_ptr<Stream> connect(const sockaddr* addr, socklen_t len,
                                            StreamHandler& handler, uint64_t timeout_ms) = 0;
    // As connect(), then a TLS handshake: on_connected() follows once it completed; a failed
    // handshake or certificate check reports Error, a slow one ConnectTimeout (the timeout
    // bounds connect and handshake together). Loops without TLS return nullptr.
    virtual std::unique_ptr<Stream> connect_tls(const sockaddr* addr, socklen_t len,
                                                StreamHandler& handler, uint64_t timeout_ms,
                                                const TlsClientOptions& tls) {
        return nullptr;
    }
    // A resolver asking `servers` ("127.0.0.1:53", "[::1]:5353"), each query bounded by
    // `timeout_ms`; also AAAA records when `ipv6`. Returns nullptr (with `error`) on a bad server.
    virtual std::unique_ptr<Resolver> make_resolver(const std::vector<std::string>& servers,
                                                    uint64_t timeout_ms, bool ipv6,
                                                    std::string& error) = 0;
    // A Redis client (core/redis.hpp) for `options.url`: it starts connecting at once and
    // reconnects on its own. nullptr when this loop cannot make one (test fakes).
    virtual std::unique_ptr<RedisClient> make_redis(const RedisOptions& options) { return nullptr; }
};

}  // namespace tollgate
