// An asynchronous Redis client as modules see it, without hiredis or libevent. The worker
// implements it (worker/redis_client.cpp, hiredis async on the worker's event loop) and makes
// one per server through EventLoop::make_redis().
//
// One connection per client (per worker, per server): commands are pipelined over it and their
// replies come back in order. Every command that was accepted completes exactly once: with the
// server's reply, or with a client-side failure (timeout, connection lost), unless the caller
// cancelled it first. A command that cannot be sent now (not connected, queue full) is refused
// up front and its callback never runs.
//
// Typical use from a phase handler (limit_req's Redis mode):
//
//     RedisError e = client.eval(kScript, keys, args, ctx->call, [ctx](const RedisReply& r) {
//         ctx->on_reply(r);  // never runs after ctx->call was cancelled or destroyed
//     });
//     if (e != RedisError::None) { /* apply the zone's fail mode now */ }
//     else return Verdict::Suspend;
//   and in the request's cleanup: ctx->call.cancel();
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "core/redis_url.hpp"

namespace tollgate {

// Why a command did not get a normal reply.
enum class RedisError : uint8_t {
    None = 0,        // the server answered (RedisReply::type() says how; may be Type::Error)
    Server,          // the server answered with an error reply ("ERR ...", "NOSCRIPT ...")
    Timeout,         // no reply within the command timeout (the connection is then dropped)
    ConnectionLost,  // the connection broke (or the client was destroyed) before the reply
    Unavailable,     // refused up front: not connected (connecting, or backing off)
    QueueFull,       // refused up front: max_pending commands already in flight
};
const char* to_string(RedisError e);

// A reply, valid only during the callback it is passed to (it views hiredis's reply). RESP2
// types; copy out what you keep.
class RedisReply {
  public:
    enum class Type : uint8_t { Nil, Integer, String, Status, Array, Error };

    // A client-side failure (error() is neither None nor Server): type() is Error, str() a
    // short description.
    static RedisReply failure(RedisError e);

    RedisError error() const { return error_; }
    // True when the server answered with anything but an error reply.
    bool ok() const { return error_ == RedisError::None; }
    Type type() const { return type_; }
    bool is_nil() const { return type_ == Type::Nil; }
    // Integer replies; 0 for other types.
    int64_t integer() const { return integer_; }
    // String, Status and Error replies (the error text); empty for other types.
    std::string_view str() const { return str_; }
    // Array replies: the number of elements and element `i` (< size()); 0 / Nil otherwise.
    size_t size() const;
    RedisReply operator[](size_t i) const;

    // For the implementation: wraps a hiredis redisReply (nullptr: Nil).
    static RedisReply from_raw(const void* raw);

  private:
    RedisError error_ = RedisError::None;
    Type type_ = Type::Nil;
    int64_t integer_ = 0;
    std::string_view str_;
    const void* raw_ = nullptr;  // hiredis's reply, for arrays
};

using RedisCallback = std::function<void(const RedisReply&)>;

namespace detail {
struct RedisPending;
}

// The caller's handle on one in-flight command. Cancelling it (or destroying it, or moving
// another call into it) guarantees the callback will not run; the command itself still
// completes on the wire. Movable, not copyable; keep it in the object the callback touches.
class RedisCall {
  public:
    RedisCall() = default;
    RedisCall(const RedisCall&) = delete;
    RedisCall& operator=(const RedisCall&) = delete;
    RedisCall(RedisCall&& other) noexcept { take(other); }
    RedisCall& operator=(RedisCall&& other) noexcept {
        if (this != &other) {
            cancel();
            take(other);
        }
        return *this;
    }
    ~RedisCall() { cancel(); }

    void cancel();
    // True while the callback is still to run.
    bool pending() const { return pending_ != nullptr; }

  private:
    friend struct detail::RedisPending;
    void take(RedisCall& other);
    detail::RedisPending* pending_ = nullptr;
};

namespace detail {
// The client's side of a RedisCall link (the implementation derives its command record from
// it). Completing or cancelling unlinks both sides.
struct RedisPending {
    RedisCall* call = nullptr;
    bool cancelled = false;

    void bind(RedisCall& c) {
        c.cancel();
        c.pending_ = this;
        call = &c;
        cancelled = false;
    }
    // Before running the callback: true if it must still run.
    bool complete() {
        if (call != nullptr) {
            call->pending_ = nullptr;
            call = nullptr;
            return true;
        }
        return !cancelled;
    }
};
}  // namespace detail

inline void RedisCall::cancel() {
    if (pending_ != nullptr) {
        pending_->call = nullptr;
        pending_->cancelled = true;
        pending_ = nullptr;
    }
}

inline void RedisCall::take(RedisCall& other) {
    pending_ = other.pending_;
    other.pending_ = nullptr;
    if (pending_ != nullptr) pending_->call = this;
}

// A Lua script, identified by its text (the client computes its SHA1 and caches it).
struct RedisScript {
    std::string_view source;
};

struct RedisOptions {
    RedisUrl url;
    uint64_t connect_timeout_ms = 1000;  // TCP connect + AUTH/SELECT/PING handshake
    uint64_t command_timeout_ms = 1000;  // oldest unanswered command; then the link is dropped
    size_t max_pending = 1024;           // commands in flight; beyond: QueueFull
    uint64_t reconnect_min_ms = 100;     // backoff after a failure: doubles up to the max,
    uint64_t reconnect_max_ms = 5000;    // each wait jittered to [50%, 100%]
};

class RedisClient {
  public:
    struct Stats {
        uint64_t connects = 0;  // handshakes completed
        uint64_t connect_failures = 0;
        uint64_t disconnects = 0;   // ready connections lost (errors, timeouts, EOF)
        uint64_t timeouts = 0;      // commands completed with Timeout
        uint64_t refused = 0;       // commands refused up front (Unavailable, QueueFull)
        uint64_t script_loads = 0;  // NOSCRIPT fallbacks to EVAL
    };

    // Destroying the client completes every pending command with ConnectionLost (callbacks
    // that run then must not issue commands: the client refuses them).
    virtual ~RedisClient() = default;

    // Connected and ready (handshake done): commands are accepted.
    virtual bool available() const = 0;
    // Commands sent and not yet completed (cancelled ones included until their reply).
    virtual size_t pending() const = 0;
    virtual const Stats& stats() const = 0;
    // "redis://127.0.0.1:6379" (password redacted), for logs.
    virtual std::string describe() const = 0;

    // Sends `argv` (binary-safe). Returns None when the command is in flight: `done` runs
    // later (never from inside this call) exactly once, unless `call` is cancelled first.
    // Otherwise returns why it was refused, and `done` never runs.
    virtual RedisError command(std::span<const std::string_view> argv, RedisCall& call,
                               RedisCallback done) = 0;
    // EVALSHA of `script` with `keys` and `args`; on NOSCRIPT (a restarted or flushed server)
    // sends EVAL with the full text once, transparently. Same contract as command().
    virtual RedisError eval(const RedisScript& script, std::span<const std::string_view> keys,
                            std::span<const std::string_view> args, RedisCall& call,
                            RedisCallback done) = 0;
};

}  // namespace tollgate
