// The worker's Redis client: one hiredis async connection, pipelined, on the worker's libevent
// base.
//
// Life of the connection:
//   Disconnected ──connect()──▶ Handshaking: AUTH, SELECT, PING queued at once (pipelined)
//   Handshaking ──PING answered──▶ Ready (available(); commands accepted)
//   any failure (connect refused, EOF, error, a handshake error, a timeout) ──▶ Disconnected,
//   every command in flight completes with an error, and a reconnect is scheduled after an
//   exponential backoff with jitter (reset once a handshake succeeds).
//
// Timeouts: every command in flight (handshake ones included) has a deadline; they are sent in
// order and answered in order, so one timer watching the oldest is enough. When the oldest is
// late the server is presumed stuck: the connection is dropped, which fails everything in
// flight (Timeout) and reconnects. So no callback ever waits longer than its deadline plus one
// timer tick.
//
// Ownership: each command is a Command record from a per-client pool, owned by the in-flight
// list from the moment hiredis accepts it until hiredis calls its reply callback (with the
// reply, or with nullptr when the context is freed: hiredis does that for every queued
// callback). The caller's RedisCall only links to it, so cancelling just unlinks.

#include "worker/redis_client.hpp"

// hiredis's libevent adapter defines its functions in the header: this is its only includer.
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/log.hpp"

namespace tollgate {

// RedisReply's accessors that read hiredis's reply (declared in core/redis.hpp).
RedisReply RedisReply::from_raw(const void* raw) {
    RedisReply out;
    const auto* r = static_cast<const redisReply*>(raw);
    if (r == nullptr) return out;
    switch (r->type) {
        case REDIS_REPLY_STRING:
            out.type_ = Type::String;
            out.str_ = std::string_view(r->str, r->len);
            break;
        case REDIS_REPLY_STATUS:
            out.type_ = Type::Status;
            out.str_ = std::string_view(r->str, r->len);
            break;
        case REDIS_REPLY_ERROR:
            out.type_ = Type::Error;
            out.error_ = RedisError::Server;
            out.str_ = std::string_view(r->str, r->len);
            break;
        case REDIS_REPLY_INTEGER:
            out.type_ = Type::Integer;
            out.integer_ = r->integer;
            break;
        case REDIS_REPLY_ARRAY:
            out.type_ = Type::Array;
            out.raw_ = r;
            break;
        default:
            out.type_ = Type::Nil;
            break;
    }
    return out;
}

size_t RedisReply::size() const {
    if (type_ != Type::Array || raw_ == nullptr) return 0;
    return static_cast<const redisReply*>(raw_)->elements;
}

RedisReply RedisReply::operator[](size_t i) const {
    if (i >= size()) return RedisReply{};
    return from_raw(static_cast<const redisReply*>(raw_)->element[i]);
}

}  // namespace tollgate

namespace tollgate::worker {

namespace {

uint64_t now_ms() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
}

std::string sha1_hex(std::string_view text) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(text.data(), text.size(), md, &len, EVP_sha1(), nullptr);
    static const char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(len * 2);
    for (unsigned int i = 0; i < len; ++i) {
        out.push_back(kHex[md[i] >> 4]);
        out.push_back(kHex[md[i] & 15]);
    }
    return out;
}

struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// A script's text and SHA1, cached per client (a handful of distinct scripts).
using ScriptCache = std::unordered_map<std::string, std::string, StringHash, std::equal_to<>>;
using ScriptEntry = ScriptCache::value_type;

// Builds hiredis's (pointer, length) argument arrays without allocating for short commands.
class ArgvBuilder {
  public:
    void add(std::string_view s) {
        if (n_ < kInline) {
            ptr_[n_] = s.data();
            len_[n_] = s.size();
        } else {
            if (n_ == kInline) {
                big_ptr_.assign(ptr_, ptr_ + kInline);
                big_len_.assign(len_, len_ + kInline);
            }
            big_ptr_.push_back(s.data());
            big_len_.push_back(s.size());
        }
        ++n_;
    }
    int argc() const { return static_cast<int>(n_); }
    const char** argv() { return n_ <= kInline ? ptr_ : big_ptr_.data(); }
    const size_t* lens() { return n_ <= kInline ? len_ : big_len_.data(); }

  private:
    static constexpr size_t kInline = 16;
    size_t n_ = 0;
    const char* ptr_[kInline];
    size_t len_[kInline];
    std::vector<const char*> big_ptr_;
    std::vector<size_t> big_len_;
};

class HiredisClient final : public RedisClient {
  public:
    HiredisClient(event_base* base, EventLoop& loop, const RedisOptions& options)
        : base_(base), options_(options), described_(options.url.to_string(true)) {
        if (options_.max_pending == 0) options_.max_pending = 1;
        if (options_.reconnect_min_ms == 0) options_.reconnect_min_ms = 1;
        if (options_.reconnect_max_ms < options_.reconnect_min_ms) {
            options_.reconnect_max_ms = options_.reconnect_min_ms;
        }
        rng_ = static_cast<uint64_t>(now_ms()) ^ (static_cast<uint64_t>(::getpid()) << 32) ^
               reinterpret_cast<uintptr_t>(this);
        if (rng_ == 0) rng_ = 0x9E3779B97F4A7C15ull;
        sweep_ = loop.make_timer([this] { on_sweep(); });
        reconnect_ = loop.make_timer([this] { connect(); });
        connect();
    }

    ~HiredisClient() override {
        closing_ = true;
        drop(RedisError::ConnectionLost);  // completes everything in flight
        while (free_ != nullptr) {
            Command* c = free_;
            free_ = c->next;
            delete c;
        }
    }

    bool available() const override { return state_ == State::Ready && !closing_; }
    size_t pending() const override { return in_flight_; }
    const Stats& stats() const override { return stats_; }
    std::string describe() const override { return described_; }

    RedisError command(std::span<const std::string_view> argv, RedisCall& call,
                       RedisCallback done) override {
        const RedisError refused = admit();
        if (refused != RedisError::None) return refused;
        ArgvBuilder b;
        for (std::string_view a : argv) b.add(a);
        Command* c = acquire(Kind::User);
        return send(c, b, call, std::move(done));
    }

    RedisError eval(const RedisScript& script, std::span<const std::string_view> keys,
                    std::span<const std::string_view> args, RedisCall& call,
                    RedisCallback done) override {
        const RedisError refused = admit();
        if (refused != RedisError::None) return refused;
        Command* c = acquire(Kind::Eval);
        c->script = &script_entry(script.source);
        c->nkeys = std::to_string(keys.size());
        // Keep the keys and arguments: a NOSCRIPT answer resends them with EVAL.
        for (std::string_view k : keys) c->save(k);
        for (std::string_view a : args) c->save(a);
        ArgvBuilder b;
        b.add("EVALSHA");
        b.add(c->script->second);
        b.add(c->nkeys);
        c->add_saved(b);
        return send(c, b, call, std::move(done));
    }

  private:
    enum class State : uint8_t { Disconnected, Handshaking, Ready };
    enum class Kind : uint8_t { User, Eval, Handshake };

    struct Command : detail::RedisPending {
        HiredisClient* owner = nullptr;
        Command* next = nullptr;  // in-flight list, or free list
        Kind kind = Kind::User;
        bool last_handshake = false;
        bool retried = false;
        uint64_t deadline = 0;
        RedisCallback done;
        // Eval: the script and the keys + args, for a resend after NOSCRIPT. The buffers keep
        // their capacity across reuses of the record.
        const ScriptEntry* script = nullptr;
        std::string nkeys;
        std::string saved;
        std::vector<size_t> saved_lens;

        void save(std::string_view s) {
            saved.append(s);
            saved_lens.push_back(s.size());
        }
        void add_saved(ArgvBuilder& b) const {
            size_t off = 0;
            for (size_t len : saved_lens) {
                b.add(std::string_view(saved).substr(off, len));
                off += len;
            }
        }
    };

    // ---- the command records --------------------------------------------------------------

    Command* acquire(Kind kind) {
        Command* c = free_;
        if (c != nullptr) {
            free_ = c->next;
            --free_count_;
        } else {
            c = new Command();
            c->owner = this;
        }
        c->next = nullptr;
        c->kind = kind;
        c->last_handshake = false;
        c->retried = false;
        c->script = nullptr;
        c->saved.clear();
        c->saved_lens.clear();
        return c;
    }

    void release(Command* c) {
        c->done = nullptr;
        c->call = nullptr;
        c->cancelled = false;
        if (free_count_ >= options_.max_pending || c->saved.capacity() > 4096) {
            delete c;  // keep the pool bounded, and drop records an odd command made large
            return;
        }
        c->next = free_;
        free_ = c;
        ++free_count_;
    }

    void push(Command* c, uint64_t timeout_ms) {
        c->deadline = now_ms() + timeout_ms;
        c->next = nullptr;
        if (tail_ != nullptr) {
            tail_->next = c;
        } else {
            head_ = c;
        }
        tail_ = c;
        ++in_flight_;
        // The timer always fires no later than the oldest deadline (early is harmless).
        if (head_ == c || !sweep_->running()) sweep_->start(timeout_ms);
    }

    // Replies come in the order the commands went out: the one answered is the oldest.
    void pop(Command* c) {
        if (head_ != c) {
            // Not expected from hiredis; unlink wherever it is rather than corrupt the list.
            LOG_ERROR("redis %s: reply out of order", described_.c_str());
            Command* p = head_;
            while (p != nullptr && p->next != c) p = p->next;
            if (p == nullptr) return;
            p->next = c->next;
            if (tail_ == c) tail_ = p;
        } else {
            head_ = c->next;
            if (head_ == nullptr) tail_ = nullptr;
        }
        c->next = nullptr;
        --in_flight_;
    }

    // ---- sending ------------------------------------------------------------------------------

    RedisError admit() {
        if (!available()) {
            ++stats_.refused;
            return RedisError::Unavailable;
        }
        if (in_flight_ >= options_.max_pending) {
            ++stats_.refused;
            return RedisError::QueueFull;
        }
        return RedisError::None;
    }

    RedisError send(Command* c, ArgvBuilder& b, RedisCall& call, RedisCallback done) {
        if (redisAsyncCommandArgv(ac_, on_reply, c, b.argc(), b.argv(), b.lens()) != REDIS_OK) {
            release(c);
            ++stats_.refused;
            return RedisError::Unavailable;
        }
        c->done = std::move(done);
        c->bind(call);
        push(c, options_.command_timeout_ms);
        return RedisError::None;
    }

    bool send_handshake(std::initializer_list<std::string_view> args, bool last) {
        ArgvBuilder b;
        for (std::string_view a : args) b.add(a);
        Command* c = acquire(Kind::Handshake);
        c->last_handshake = last;
        if (redisAsyncCommandArgv(ac_, on_reply, c, b.argc(), b.argv(), b.lens()) != REDIS_OK) {
            release(c);
            return false;
        }
        push(c, options_.connect_timeout_ms);
        return true;
    }

    const ScriptEntry& script_entry(std::string_view source) {
        auto it = scripts_.find(source);
        if (it == scripts_.end()) {
            it = scripts_.emplace(std::string(source), sha1_hex(source)).first;
        }
        return *it;
    }

    // ---- replies ------------------------------------------------------------------------------

    static void on_reply(redisAsyncContext* ac, void* reply, void* privdata) {
        auto* c = static_cast<Command*>(privdata);
        c->owner->handle_reply(ac, static_cast<redisReply*>(reply), c);
    }

    void handle_reply(redisAsyncContext* ac, redisReply* reply, Command* c) {
        pop(c);
        if (reply == nullptr) {
            // The context is going away (hiredis fails its callbacks before onDisconnect):
            // refuse new commands from now on.
            if (ac == ac_) state_ = State::Disconnected;
            const RedisError why = ac == ac_ ? RedisError::ConnectionLost : fail_reason_;
            if (why == RedisError::Timeout && c->kind != Kind::Handshake) ++stats_.timeouts;
            finish(c, RedisReply::failure(why));
            return;
        }
        if (c->kind == Kind::Handshake) {
            const bool last = c->last_handshake;
            release(c);
            if (ac != ac_) return;
            if (reply->type == REDIS_REPLY_ERROR) {
                const std::string why = "handshake failed: " + std::string(reply->str, reply->len);
                log_failure(why.c_str());
                ++stats_.connect_failures;
                drop(RedisError::ConnectionLost);
                return;
            }
            if (last) {
                state_ = State::Ready;
                conn_ready_ = true;
                attempt_ = 0;
                ++stats_.connects;
                LOG_NOTICE("redis %s: connected", described_.c_str());
            }
            return;
        }
        if (c->kind == Kind::Eval && !c->retried && c->call != nullptr &&
            reply->type == REDIS_REPLY_ERROR && reply->len >= 8 &&
            std::memcmp(reply->str, "NOSCRIPT", 8) == 0 && ac == ac_ && state_ == State::Ready) {
            // The server does not know the script (restarted, or SCRIPT FLUSH): send it whole
            // once; EVAL also caches it there for the next EVALSHA.
            c->retried = true;
            ++stats_.script_loads;
            ArgvBuilder b;
            b.add("EVAL");
            b.add(c->script->first);
            b.add(c->nkeys);
            c->add_saved(b);
            if (redisAsyncCommandArgv(ac_, on_reply, c, b.argc(), b.argv(), b.lens()) == REDIS_OK) {
                push(c, options_.command_timeout_ms);
                return;
            }
            finish(c, RedisReply::failure(RedisError::ConnectionLost));
            return;
        }
        finish(c, RedisReply::from_raw(reply));
    }

    void finish(Command* c, const RedisReply& r) {
        if (c->kind == Kind::Handshake) {
            release(c);
            return;
        }
        const bool run = c->complete();
        RedisCallback done = std::move(c->done);
        release(c);
        if (run && done) done(r);
    }

    // ---- the connection -----------------------------------------------------------------------

    void connect() {
        if (closing_ || ac_ != nullptr) return;
        const RedisUrl& u = options_.url;
        // hiredis resolves a host name with getaddrinfo (blocking): configs should name an IP.
        redisAsyncContext* ac = u.kind == RedisUrl::Kind::Unix
                                    ? redisAsyncConnectUnix(u.path.c_str())
                                    : redisAsyncConnect(u.host.c_str(), u.port);
        if (ac == nullptr || ac->err != 0) {
            if (ac != nullptr) {
                log_failure(("cannot connect: " + std::string(ac->errstr)).c_str());
                redisAsyncFree(ac);
            } else {
                log_failure("cannot connect: out of memory");
            }
            ++stats_.connect_failures;
            schedule_reconnect();
            return;
        }
        if (redisLibeventAttach(ac, base_) != REDIS_OK) {
            redisAsyncFree(ac);
            ++stats_.connect_failures;
            schedule_reconnect();
            return;
        }
        ac->data = this;
        redisAsyncSetConnectCallback(ac, on_connect);
        redisAsyncSetDisconnectCallback(ac, on_disconnect);
        ac_ = ac;
        state_ = State::Handshaking;
        conn_ready_ = false;
        const std::string db = std::to_string(u.db);
        bool ok = true;
        if (u.has_password) {
            ok = u.username.empty() ? send_handshake({"AUTH", u.password}, false)
                                    : send_handshake({"AUTH", u.username, u.password}, false);
        }
        if (ok && u.db != 0) ok = send_handshake({"SELECT", db}, false);
        if (ok) ok = send_handshake({"PING"}, true);
        if (!ok) {
            ++stats_.connect_failures;
            drop(RedisError::ConnectionLost);
        }
    }

    static void on_connect(const redisAsyncContext* ac, int status) {
        auto* self = static_cast<HiredisClient*>(ac->data);
        if (status == REDIS_OK || ac != self->ac_) return;
        // hiredis frees the context after this returns, failing the queued handshake.
        self->log_failure((std::string("cannot connect: ") + ac->errstr).c_str());
        ++self->stats_.connect_failures;
        self->lost();
    }

    static void on_disconnect(const redisAsyncContext* ac, int status) {
        auto* self = static_cast<HiredisClient*>(ac->data);
        if (ac != self->ac_) return;  // we freed it ourselves and know already
        if (self->conn_ready_) {
            ++self->stats_.disconnects;
            LOG_WARN("redis %s: connection lost: %s", self->described_.c_str(),
                     ac->errstr[0] != '\0' ? ac->errstr : "closed");
        } else {
            self->log_failure(ac->errstr[0] != '\0' ? ac->errstr : "closed during the handshake");
            ++self->stats_.connect_failures;
        }
        self->lost();
    }

    // hiredis is freeing the context on its own: forget it and plan the next attempt.
    void lost() {
        ac_ = nullptr;
        fail_reason_ = RedisError::ConnectionLost;
        state_ = State::Disconnected;
        schedule_reconnect();
    }

    // Frees the connection now: everything in flight completes with `why`.
    void drop(RedisError why) {
        redisAsyncContext* ac = ac_;
        if (ac == nullptr) return;
        if (state_ == State::Ready) ++stats_.disconnects;
        ac_ = nullptr;
        state_ = State::Disconnected;
        fail_reason_ = why;
        redisAsyncFree(ac);  // from inside a hiredis callback hiredis defers this until it returns
        schedule_reconnect();
    }

    void on_sweep() {
        if (head_ == nullptr) return;
        const uint64_t now = now_ms();
        if (head_->deadline > now) {
            sweep_->start(head_->deadline - now);
            return;
        }
        if (state_ == State::Ready) {
            LOG_WARN("redis %s: no reply within %llu ms, reconnecting", described_.c_str(),
                     static_cast<unsigned long long>(options_.command_timeout_ms));
        } else {
            log_failure("connect or handshake timeout");
            ++stats_.connect_failures;
        }
        drop(RedisError::Timeout);
        fail_reason_ = RedisError::ConnectionLost;  // the free above ran its callbacks already
        // Records failed by a deferred free still sit in the list; look again later.
        if (head_ != nullptr && !sweep_->running()) sweep_->start(options_.command_timeout_ms);
    }

    void schedule_reconnect() {
        if (closing_ || reconnect_->running()) return;
        uint64_t delay = options_.reconnect_max_ms;
        if (attempt_ < 32) {
            const uint64_t exp = options_.reconnect_min_ms << attempt_;
            if ((exp >> attempt_) == options_.reconnect_min_ms) delay = std::min(delay, exp);
        }
        ++attempt_;
        // xorshift64: spreads the workers' retries over [delay/2, delay].
        rng_ ^= rng_ << 13;
        rng_ ^= rng_ >> 7;
        rng_ ^= rng_ << 17;
        const uint64_t half = delay / 2;
        delay = half + rng_ % (delay - half + 1);
        reconnect_->start(delay);
    }

    // Connection failures repeat while a server is down: log the first of a streak only.
    void log_failure(const char* why) {
        if (attempt_ == 0) {
            LOG_ERROR("redis %s: %s (retrying)", described_.c_str(), why);
        } else {
            LOG_DEBUG("redis %s: %s", described_.c_str(), why);
        }
    }

    event_base* base_;
    RedisOptions options_;
    std::string described_;
    redisAsyncContext* ac_ = nullptr;
    State state_ = State::Disconnected;
    bool conn_ready_ = false;  // the current connection completed its handshake
    bool closing_ = false;
    RedisError fail_reason_ = RedisError::ConnectionLost;
    unsigned attempt_ = 0;
    uint64_t rng_ = 0;
    std::unique_ptr<Timer> sweep_;
    std::unique_ptr<Timer> reconnect_;
    Command* head_ = nullptr;
    Command* tail_ = nullptr;
    size_t in_flight_ = 0;
    Command* free_ = nullptr;
    size_t free_count_ = 0;
    ScriptCache scripts_;
    Stats stats_;
};

}  // namespace

std::unique_ptr<RedisClient> make_redis_client(event_base* base, EventLoop& loop,
                                               const RedisOptions& options) {
    return std::make_unique<HiredisClient>(base, loop, options);
}

}  // namespace tollgate::worker
