#include "modules/proxy/proxy.hpp"

#include <arpa/inet.h>
#include <unistd.h>
#include <algorithm>
#include <cstdio>
#include <cstring>

#include <map>
#include <memory_resource>
#include <optional>
#include <unordered_map>
#include <utility>

#include "core/http/chunked.hpp"
#include "core/http/http_config.hpp"
#include "core/http/response_head.hpp"
#include "core/log.hpp"
#include "modules/proxy/balancer.hpp"
#include "modules/proxy/health_check.hpp"

namespace tollgate::proxy {

namespace {

// Request body bytes queued toward the upstream before we wait for it to drain.
constexpr size_t kBodyWindow = 65536;
// Bytes a tunnel queues toward one side before it stops reading the other.
constexpr size_t kTunnelWindow = 65536;
// Request body bytes kept for replay on the next server (proxy_next_upstream): a body that
// grows past this is streamed on without a copy, and its request is no longer retried.
constexpr size_t kRetryBodyKeep = 65536;

int64_t now_ms() {
    return http::now_usec() / 1000;
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(a[i])) !=
            std::tolower(static_cast<unsigned char>(b[i]))) {
            return false;
        }
    }
    return true;
}

// True when `list` (a Connection header value) names `name` as one of its tokens.
bool connection_names(std::string_view list, std::string_view name) {
    size_t pos = 0;
    while (pos <= list.size()) {
        size_t end = list.find(',', pos);
        if (end == std::string_view::npos) end = list.size();
        std::string_view t = list.substr(pos, end - pos);
        while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
        while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
        if (iequals(t, name)) return true;
        pos = end + 1;
    }
    return false;
}

// Hop-by-hop headers (RFC 9110 §7.6.1): never forwarded in either direction.
bool is_hop_by_hop(std::string_view name, const std::pmr::vector<http::Header>& headers) {
    static constexpr std::string_view kFixed[] = {"connection", "keep-alive",        "te",
                                                  "trailer",    "transfer-encoding", "upgrade"};
    for (std::string_view f : kFixed) {
        if (iequals(name, f)) return true;
    }
    if (name.size() >= 6 && iequals(name.substr(0, 6), "proxy-")) return true;
    for (const http::Header& h : headers) {
        if (iequals(h.name, "connection") && connection_names(h.value, name)) return true;
    }
    return false;
}

bool in_list(const std::optional<std::vector<std::string>>& list, std::string_view name) {
    if (!list) return false;
    return std::any_of(list->begin(), list->end(),
                       [&](const std::string& s) { return iequals(s, name); });
}

// Percent-escapes what may not appear raw in a request path.
void append_escaped_path(std::pmr::string& out, std::string_view path) {
    static const char* hex = "0123456789ABCDEF";
    for (unsigned char c : path) {
        if (c <= 0x20 || c >= 0x7F || c == '%' || c == '?' || c == '#' || c == '"') {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
}

// ---- per-worker state ------------------------------------------------------------------------

class Pool;

// A slot for a parked keepalive connection: it only waits to be reused, closed by the upstream,
// or timed out. A pool makes at most `keepalive` slots, each with its timer, and reuses them:
// parking and taking a connection allocate nothing.
struct IdleConn final : StreamHandler {
    Pool* pool = nullptr;
    size_t peer = 0;
    bool tls = false;  // one upstream block can be reached over http:// and https:// alike
    uint64_t requests = 0;
    std::unique_ptr<Stream> stream;
    std::unique_ptr<Timer> timer;
    IdleConn* prev = nullptr;  // the idle list; `next` also links the free slots
    IdleConn* next = nullptr;
    void on_readable() override;  // unsolicited bytes or a close: the connection is unusable
    void on_drained() override {}
    void on_stream_event(StreamEvent) override;
};

class Pool {
  public:
    Pool(const Upstream& up, EventLoop& loop) : up_(up), loop_(loop) {}
    Pool(const Pool&) = delete;
    Pool& operator=(const Pool&) = delete;
    void park(size_t peer, bool tls, uint64_t requests, std::unique_ptr<Stream> stream) {
        IdleConn* c = free_;
        if (c != nullptr) {
            free_ = c->next;
        } else if (slots_.size() < up_.keepalive) {
            slots_.push_back(std::make_unique<IdleConn>());
            c = slots_.back().get();
            c->pool = this;
            c->timer = loop_.make_timer([this, c] { drop(c); });
        } else {
            c = tail_;  // every slot is idle: the least recently used connection goes
            unlink(c);
            c->timer->stop();
            c->stream.reset();
        }
        c->peer = peer;
        c->tls = tls;
        c->requests = requests;
        c->stream = std::move(stream);
        c->stream->set_handler(*c);
        c->stream->resume_reading();
        c->timer->start(up_.keepalive_timeout_ms);
        c->prev = nullptr;  // most recently used first
        c->next = head_;
        if (head_ != nullptr) head_->prev = c;
        head_ = c;
        if (tail_ == nullptr) tail_ = c;
    }
    // Takes an idle connection to `peer`, over TLS or not, or nothing.
    std::unique_ptr<Stream> take(size_t peer, bool tls, uint64_t& requests) {
        for (IdleConn* c = head_; c != nullptr; c = c->next) {
            if (c->peer != peer || c->tls != tls) continue;
            std::unique_ptr<Stream> s = std::move(c->stream);
            requests = c->requests;
            release(c);
            return s;
        }
        return nullptr;
    }
    // Closes a parked connection (from its own stream or timer callback: the slot stays).
    void drop(IdleConn* c) {
        c->stream.reset();
        release(c);
    }
    void clear() {
        while (head_ != nullptr) drop(head_);
    }

  private:
    void unlink(IdleConn* c) {
        (c->prev != nullptr ? c->prev->next : head_) = c->next;
        (c->next != nullptr ? c->next->prev : tail_) = c->prev;
        c->prev = c->next = nullptr;
    }
    void release(IdleConn* c) {
        unlink(c);
        c->timer->stop();
        c->next = free_;
        free_ = c;
    }

    const Upstream& up_;
    EventLoop& loop_;
    std::vector<std::unique_ptr<IdleConn>> slots_;
    IdleConn* head_ = nullptr;  // idle connections, most recently parked first
    IdleConn* tail_ = nullptr;
    IdleConn* free_ = nullptr;  // slots without a connection
};

void IdleConn::on_readable() {
    pool->drop(this);
}
void IdleConn::on_stream_event(StreamEvent) {
    pool->drop(this);
}

struct UpstreamState {
    const Upstream* up = nullptr;
    PeerSet peers;  // the balancer over the servers' shared state (balancer.hpp)
    std::unique_ptr<Pool> pool;
};

class PendingLookup;

// A resolver of this worker, with its answers cached for their TTL (or valid=), and the
// lookups under way with the requests waiting on each.
struct WorkerResolver {
    struct Entry {
        std::vector<sockaddr_storage> addresses;
        int64_t expires_ms = 0;
    };
    struct Inflight {
        std::unique_ptr<Resolver::Lookup> lookup;
        std::vector<PendingLookup*> waiters;
        uint64_t valid_ms = 0;
    };
    std::unique_ptr<Resolver> resolver;
    std::unordered_map<std::string, Entry> cache;
    std::unordered_map<std::string, Inflight> inflight;  // destroyed first: cancels the queries
};
// Names cached per resolver before the cache is emptied (bounded memory).
constexpr size_t kMaxCachedNames = 10000;

class Exchange;

// An exchange's timer. Made once and reused by one exchange after another through the worker's
// free list, so a proxied request allocates no timer.
struct ExchangeTimer {
    std::unique_ptr<Timer> timer;
    Exchange* owner = nullptr;
    ExchangeTimer* next_free = nullptr;
};
// Free timers a worker keeps (beyond them, a finished exchange's timer is freed).
constexpr size_t kMaxFreeTimers = 1024;

struct WorkerState {
    EventLoop* loop = nullptr;
    std::vector<UpstreamState> upstreams;
    std::map<std::pair<const ResolverConf*, uint64_t>, WorkerResolver> resolvers;
    ExchangeTimer* free_timers = nullptr;
    size_t free_timer_count = 0;
    std::unique_ptr<HealthChecks> health;  // last: stopped first

    WorkerState() = default;
    WorkerState(const WorkerState&) = delete;
    WorkerState& operator=(const WorkerState&) = delete;
    ~WorkerState() {
        while (free_timers != nullptr) delete std::exchange(free_timers, free_timers->next_free);
    }
};

WorkerState* g_worker = nullptr;

// ---- the exchange ----------------------------------------------------------------------------

class Exchange final : public http::RequestTask,
                       public http::BodySource,
                       public http::Tunnel,
                       public StreamHandler {
  public:
    Exchange(http::Request& r, const ProxyLocConf& conf, UpstreamState& us)
        : r_(r),
          conf_(conf),
          us_(us),
          tried_(us.up->servers.size(), false, r.arena),
          attempts_(r.arena),
          limits_{static_cast<size_t>(conf.head_limit()), static_cast<size_t>(conf.head_limit()),
                  200},
          scanner_(limits_),
          resp_(r.arena),
          timer_(acquire_timer(this)) {}

    ~Exchange() {
        close_upstream();
        release_peer(Outcome::Neutral);
        release_timer(timer_);
    }

    // For a proxy_pass with variables: the target and Host this request uses instead of the
    // configured ones (views into the request arena).
    void set_overrides(std::string_view target, std::string_view host) {
        target_override_ = target;
        host_override_ = host;
    }
    // For a proxy_pass with variables: whether this request's URL is https://, and its host.
    void set_tls(bool ssl, std::string_view host) {
        ssl_ = ssl;
        tls_host_ = host;
    }

    // Starts the exchange inside the content handler. Returns the handler's verdict.
    Verdict start() {
        in_handler_ = true;
        if (r_.has_body() && r_.head.framing == http::BodyFraming::Chunked &&
            conf_.http_version_minor.value_or(1) == 0) {
            in_handler_ = false;
            return r_.respond_error(411, "chunked request bodies need proxy_http_version 1.1");
        }
        r_.task = this;
        first_start_ms_ = now_ms();
        if (us_.up->retry_budget.enabled) {
            worker_budget(*us_.up).on_request(us_.up->retry_budget, first_start_ms_);
        }
        // A copy of the body is kept only where a retry could happen at all.
        keep_body_ = r_.has_body() && conf_.retry.may_retry() && us_.up->servers.size() > 1;
        connect_next();
        in_handler_ = false;
        return answered_ ? Verdict::Respond : Verdict::Suspend;
    }

    // One server tried for this request, in the order tried: the $upstream_* variables list
    // every one, ", "-separated, as nginx does.
    struct Attempt {
        std::string_view addr;
        int status = 0;  // 0: no status (yet)
        int64_t start_usec = 0;
        int64_t connect_usec = -1;
        int64_t header_usec = -1;
        int64_t end_usec = 0;
    };
    const std::pmr::vector<Attempt>& attempts() const { return attempts_; }
    const http::ResponseHead& response() const { return resp_; }
    bool has_response() const { return resp_.status != 0; }

    // RequestTask: the client went away or the request ended early.
    void abort() override {
        state_ = State::Done;
        timer().stop();
        close_upstream();
    }
    // Tunnel: the client connection after a 101, piped to the upstream connection both ways.
    void on_client_stream(Stream& client) override {
        client_ = &client;
        state_ = State::Tunnel;
        client.set_handler(client_side_);
        client.set_read_limit(kTunnelWindow);
        conn_->set_read_limit(kTunnelWindow);
        timer().start(conf_.read_timeout());
        // Bytes that came along with the heads go first.
        if (!pipe(client.input(), *conn_, client)) return;
        if (!pipe(conn_->input(), client, *conn_)) return;
        client.resume_reading();
        conn_->resume_reading();
    }

    void on_body_available() override {
        if (state_ == State::Sending || state_ == State::Reading) pump_body();
    }

    // BodySource: the worker pulls the response body.
    Pull pull(Buffer& out, size_t max) override {
        if (state_ != State::Streaming) {
            if (staged_ && !staged_->empty()) {  // a body read whole with the head
                out.move_from(*staged_, max);
                return staged_->empty() && !failed_ ? Pull::Done : Pull::Data;
            }
            return failed_ ? Pull::Error : Pull::Done;
        }
        if (failed_ || conn_ == nullptr) {
            finish(false);
            return Pull::Error;
        }
        Buffer& in = conn_->input();
        size_t before = out.size();
        if (staged_ && !staged_->empty()) out.move_from(*staged_, max);
        bool complete = false;
        switch (resp_.framing) {
            case http::ResponseFraming::ContentLength: {
                size_t n = std::min<uint64_t>(std::min<uint64_t>(remaining_, in.size()), max);
                out.move_from(in, n);
                remaining_ -= n;
                complete = remaining_ == 0;
                break;
            }
            case http::ResponseFraming::Chunked:
                while (out.size() - before < max) {
                    std::string_view seg = in.front();
                    if (seg.empty()) break;
                    auto step = chunked_.next(seg);
                    in.drain(step.framing);
                    size_t take = std::min(step.data, max - (out.size() - before));
                    if (take > 0) out.move_from(in, take);
                    if (step.status == http::ChunkedDecoder::Status::Error) {
                        LOG_ERROR("upstream sent invalid chunked response while reading upstream");
                        failed_ = true;
                        finish(false);
                        return Pull::Error;
                    }
                    if (step.status == http::ChunkedDecoder::Status::Done) {
                        complete = true;
                        break;
                    }
                    if (step.framing == 0 && take == 0) break;
                }
                break;
            case http::ResponseFraming::UntilClose:
                out.move_from(in, std::min(in.size(), max));
                complete = upstream_eof_ && in.empty();
                break;
            case http::ResponseFraming::None:
                complete = true;
                break;
        }
        bool moved = out.size() > before;
        if (complete) {
            finish(true);
            return Pull::Done;  // with the last bytes, if any: no further pull needed
        }
        if (conn_ != nullptr) conn_->resume_reading();
        if (moved) return Pull::Data;
        if (failed_ || upstream_eof_) {
            LOG_ERROR(
                "upstream prematurely closed connection while reading upstream, "
                "upstream: %s",
                addr());
            finish(false);
            return Pull::Error;
        }
        waiting_ = true;
        return Pull::Wait;
    }

    // StreamHandler: the upstream connection.
    void on_connected() override {
        attempts_.back().connect_usec = http::now_usec() - attempts_.back().start_usec;
        send_request();
    }
    void on_readable() override {
        if (state_ == State::Tunnel) {
            timer().start(conf_.read_timeout());
            pipe(conn_->input(), *client_, *conn_);
            return;
        }
        if (state_ == State::Sending || state_ == State::Reading) {
            read_head();
        } else if (state_ == State::Streaming) {
            timer().start(conf_.read_timeout());
            if (waiting_) {
                waiting_ = false;
                r_.body_ready();
            }
        }
    }
    void on_drained() override {
        if (state_ == State::Tunnel) {
            if (client_ != nullptr) client_->resume_reading();
            return;
        }
        if (!body_done_ && (state_ == State::Sending || state_ == State::Reading)) pump_body();
    }
    void on_stream_event(StreamEvent e) override {
        if (state_ == State::Tunnel) {
            end_tunnel();
            return;
        }
        if (state_ == State::Connecting ||
            ((state_ == State::Sending || state_ == State::Reading) && !got_bytes_)) {
            if (reused_ && !body_started_ && state_ != State::Connecting) {
                // A kept-alive connection the upstream closed meanwhile: try a fresh one.
                close_upstream();
                reused_ = false;
                connect_to(peer_, true);
                return;
            }
            bool timeout = e == StreamEvent::ConnectTimeout || e == StreamEvent::WriteTimeout;
            LOG_ERROR("%s while %s to upstream, upstream: %s",
                      timeout ? "upstream timed out" : "connect() failed or connection lost",
                      state_ == State::Connecting ? "connecting" : "sending request", addr());
            end_attempt(timeout ? 504 : 502);
            us_.peers.failed(peer_, mono_ms());
            close_upstream();
            (void)next_upstream(timeout ? kRetryTimeout : kRetryError, timeout ? 504 : 502, false);
            return;
        }
        if (state_ == State::Sending || state_ == State::Reading) {
            LOG_ERROR(
                "upstream prematurely closed connection while reading response header, "
                "upstream: %s",
                addr());
            bool timeout = e == StreamEvent::WriteTimeout;
            end_attempt(timeout ? 504 : 502);
            us_.peers.failed(peer_, mono_ms());
            close_upstream();
            (void)next_upstream(timeout ? kRetryTimeout : kRetryError, timeout ? 504 : 502, false);
            return;
        }
        if (state_ == State::Streaming) {
            if (e == StreamEvent::Eof) {
                upstream_eof_ = true;
            } else {
                failed_ = true;
            }
            if (waiting_) {
                waiting_ = false;
                r_.body_ready();
            }
        }
    }

  private:
    // Backoff: waiting (on the timer) before the next try (retry.hpp).
    enum class State : uint8_t { Connecting, Sending, Reading, Streaming, Tunnel, Backoff, Done };

    Timer& timer() { return *timer_->timer; }

    static ExchangeTimer* acquire_timer(Exchange* owner) {
        ExchangeTimer* t = g_worker->free_timers;
        if (t != nullptr) {
            g_worker->free_timers = t->next_free;
            --g_worker->free_timer_count;
        } else {
            t = new ExchangeTimer();
            t->timer = g_worker->loop->make_timer([t] {
                if (t->owner != nullptr) t->owner->on_timeout();
            });
        }
        t->owner = owner;
        return t;
    }
    static void release_timer(ExchangeTimer* t) {
        t->timer->stop();
        t->owner = nullptr;
        if (g_worker == nullptr || g_worker->free_timer_count >= kMaxFreeTimers) {
            delete t;
            return;
        }
        t->next_free = g_worker->free_timers;
        g_worker->free_timers = t;
        ++g_worker->free_timer_count;
    }

    // The client side of a tunnel.
    struct ClientSide final : StreamHandler {
        Exchange* ex;
        explicit ClientSide(Exchange* e) : ex(e) {}
        void on_readable() override {
            ex->timer().start(ex->conf_.read_timeout());
            ex->pipe(ex->client_->input(), *ex->conn_, *ex->client_);
        }
        void on_drained() override { ex->conn_->resume_reading(); }
        void on_stream_event(StreamEvent) override { ex->end_tunnel(); }
    };

    // Moves what `from` holds to `to` and sends it; stops reading `source` while `to` is
    // backed up. Returns false when the tunnel ended (the exchange may be gone).
    bool pipe(Buffer& from, Stream& to, Stream& source) {
        if (from.empty()) return true;
        to.output().move_from(from);
        if (to.output().size() >= kTunnelWindow) {
            source.stop_reading();
        } else {
            source.resume_reading();
        }
        return to.flush(conf_.send_timeout());
    }

    void end_tunnel() {
        state_ = State::Done;
        timer().stop();
        close_upstream();
        end_attempt(0);
        r_.end_tunnel();  // closes the client connection and destroys this exchange
    }

    void connect_next(int status_if_none = 502) {
        PickResult pick = us_.peers.pick(r_, tried_);
        int peer = pick.peer;
        if (peer < 0) {
            if (pick.why == NoPeer::AllOpen && attempts_.empty()) {
                LOG_ERROR("every server of upstream \"%s\" has its circuit breaker open",
                          us_.up->name.c_str());
                retry_after_s_ = (pick.retry_after_ms + 999) / 1000;
                fail(503);
                return;
            }
            if (status_if_none == 502 && attempts_.empty()) {
                LOG_ERROR("no live upstreams while connecting to upstream \"%s\"",
                          us_.up->name.c_str());
            }
            fail(status_if_none);
            return;
        }
        held_ = pick;
        connect_to(static_cast<size_t>(peer), false);
    }

    void connect_to(size_t peer, bool fresh_only) {
        peer_ = peer;
        const UpstreamServer& s = us_.up->servers[peer];
        if (!tried_[peer] || attempts_.empty()) {
            tried_[peer] = true;
            attempts_.push_back(Attempt{r_.copy(s.addr_text), 0, http::now_usec()});
        }  // else a stale pooled connection is retried fresh: still the same attempt
        state_ = State::Connecting;
        got_bytes_ = false;
        reused_ = false;
        if (!fresh_only && us_.pool) {
            conn_ = us_.pool->take(peer, ssl_, conn_requests_);
            if (conn_ != nullptr) {
                reused_ = true;
                conn_->set_handler(*this);
                attempts_.back().connect_usec = 0;
                send_request();
                return;
            }
        }
        conn_requests_ = 0;
        if (ssl_) {
            conn_ = g_worker->loop->connect_tls(reinterpret_cast<const sockaddr*>(&s.addr),
                                                s.addr_len, *this, conf_.connect_timeout(),
                                                tls_options(conf_, tls_host_));
        } else {
            conn_ = g_worker->loop->connect(reinterpret_cast<const sockaddr*>(&s.addr), s.addr_len,
                                            *this, conf_.connect_timeout());
        }
        if (conn_ == nullptr) {
            LOG_ERROR("socket() failed while connecting to upstream %s", addr());
            fail(502);
        }
    }

    void send_request() {
        state_ = State::Sending;
        request_sent_ = true;
        if (attempts_.size() > 1 || resp_.status != 0) {  // a retry: forget the last response
            resp_ = http::ResponseHead(r_.arena);
            scanner_.reset();
        }
        ++conn_requests_;
        conn_->set_read_limit(std::max<uint64_t>(conf_.head_limit(), conf_.read_ahead()));
        write_request_head();
        if (body_copy_ && !body_copy_->empty()) replay_body();
        conn_->resume_reading();
        pump_body();  // last: a failure here may end the request and free this exchange
    }

    // Appends the request head for the upstream to its output.
    void write_request_head() {
        std::pmr::string h(r_.arena);
        h.reserve(1024);
        h += r_.head.method_name;
        h += ' ';
        if (!target_override_.empty()) {
            h += target_override_;
        } else if (conf_.has_uri) {
            h += conf_.uri;
            std::string_view rest = r_.uri;
            if (rest.substr(0, conf_.location_prefix.size()) == conf_.location_prefix) {
                rest.remove_prefix(conf_.location_prefix.size());
            }
            append_escaped_path(h, rest);
            if (!r_.args.empty()) {
                h += '?';
                h += r_.args;
            }
        } else if (r_.redirects == 0) {
            h += r_.head.path;  // as the client sent it (origin-form even for absolute-form)
            // A '?' with nothing after it is kept as sent; an awaited subrequest (auth_request)
            // has its own path and no query, though its target is the parent's.
            if (!r_.head.query.empty() ||
                (r_.subrequest != http::Request::SubrequestKind::Awaited &&
                 r_.head.target.find('?') != std::string_view::npos)) {
                h += '?';
                h += r_.head.query;
            }
        } else {
            append_escaped_path(h, r_.uri);
            if (!r_.args.empty()) {
                h += '?';
                h += r_.args;
            }
        }
        int minor = conf_.http_version_minor.value_or(1);
        h += minor == 1 ? " HTTP/1.1\r\n" : " HTTP/1.0\r\n";

        auto overridden = [&](std::string_view name) {
            if (!conf_.set_headers) return false;
            for (const HeaderSetting& s : *conf_.set_headers) {
                if (iequals(s.name, name)) return true;
            }
            return false;
        };
        auto add = [&](std::string_view name, std::string_view value) {
            h += name;
            h += ": ";
            h += value;
            h += "\r\n";
        };
        if (!overridden("host")) {
            add("Host",
                host_override_.empty() ? std::string_view(conf_.proxy_host) : host_override_);
        }
        if (!overridden("x-forwarded-for")) {
            h += "X-Forwarded-For: ";
            for (const http::Header& hd : r_.head.headers) {  // every copy, in order
                if (iequals(hd.name, "x-forwarded-for") && !hd.value.empty()) {
                    h += hd.value;
                    h += ", ";
                }
            }
            h += r_.conn.remote_addr;
            h += "\r\n";
        }
        if (!overridden("x-forwarded-proto")) {
            add("X-Forwarded-Proto", r_.conn.tls != nullptr ? "https" : "http");
        }
        if (!overridden("x-forwarded-host") && !r_.head.host.empty()) {
            add("X-Forwarded-Host", r_.head.host);
        }
        if (wants_upgrade()) {
            add("Upgrade", r_.head.find("upgrade")->value);
            add("Connection", "upgrade");
        } else if (!overridden("connection")) {
            bool pooled = us_.up->keepalive > 0;
            if (!pooled) {
                add("Connection", "close");
            } else if (minor == 0) {
                add("Connection", "keep-alive");
            }
        }
        if (conf_.set_headers) {
            for (const HeaderSetting& s : *conf_.set_headers) {
                std::string_view v = s.value.evaluate(r_);
                if (v.empty()) continue;
                // A value built from decoded variables ($uri) may hold CR, LF or NUL: sending it
                // would inject headers into the upstream request, so the header is dropped.
                if (v.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos) {
                    LOG_WARN("proxy_set_header %s: value has CR, LF or NUL, not sent",
                             s.name.c_str());
                    continue;
                }
                add(s.name, v);
            }
        }
        for (const http::Header& hd : r_.head.headers) {
            if (is_hop_by_hop(hd.name, r_.head.headers) || iequals(hd.name, "host") ||
                iequals(hd.name, "content-length") || iequals(hd.name, "expect") ||
                iequals(hd.name, "x-forwarded-for") || iequals(hd.name, "x-forwarded-proto") ||
                iequals(hd.name, "x-forwarded-host") || overridden(hd.name)) {
                continue;
            }
            add(hd.name, hd.value);
        }
        chunked_up_ = false;
        if (r_.has_body()) {
            body_done_ = false;  // a retry sends the body again
            if (r_.head.framing == http::BodyFraming::ContentLength) {
                add("Content-Length", std::to_string(r_.head.content_length));
            } else {
                add("Transfer-Encoding", "chunked");
                chunked_up_ = true;
            }
        } else {
            body_done_ = true;
        }
        h += "\r\n";
        conn_->output().append(h);
    }

    // Moves request body bytes from the client toward the upstream while the upstream takes them.
    void pump_body() {
        if (pumping_ || conn_ == nullptr) return;
        pumping_ = true;
        while (!body_done_ && conn_->output().size() < kBodyWindow) {
            if (!body_chunk_) body_chunk_.emplace();
            Buffer& chunk = *body_chunk_;  // reused: no allocation per read
            http::BodyRead rd = r_.read_body(chunk, kBodyWindow);
            if (rd == http::BodyRead::Data) {
                body_started_ = true;
                keep_for_retry(chunk);
                if (chunked_up_) {
                    char line[24];
                    int n = std::snprintf(line, sizeof(line), "%zx\r\n", chunk.size());
                    conn_->output().append(std::string_view(line, static_cast<size_t>(n)));
                    conn_->output().move_from(chunk);
                    conn_->output().append("\r\n");
                } else {
                    conn_->output().move_from(chunk);
                }
                continue;
            }
            if (rd == http::BodyRead::Wait) break;
            if (rd == http::BodyRead::Done) {
                if (chunked_up_) conn_->output().append("0\r\n\r\n");
                body_done_ = true;
                break;
            }
            // The client's body is bad or the client left: nothing sensible can reach upstream.
            pumping_ = false;
            close_upstream();
            int status = r_.body_error_status;
            if (status == 0) {
                abort_quietly();
            } else {
                fail(status);
            }
            return;
        }
        if (body_done_ && state_ == State::Sending) {
            state_ = State::Reading;
            timer().start(conf_.read_timeout());
        }
        pumping_ = false;
        // Last: on_drained() may come back here (and the exchange may be gone after a failure).
        if (!conn_->output().empty()) conn_->flush(conf_.send_timeout());
    }

    void read_head() {
        Buffer& in = conn_->input();
        while (!in.empty()) {
            got_bytes_ = true;
            std::string_view bytes = in.pullup(std::min<size_t>(in.size(), limits_.max_head + 4));
            auto st = scanner_.scan(bytes);
            if (st == http::ResponseHeadScanner::Status::NeedMore) {
                if (in.size() > limits_.max_head) {
                    LOG_ERROR(
                        "upstream sent too big header while reading response header, "
                        "upstream: %s",
                        addr());
                    invalid_head();
                }
                return;
            }
            if (st == http::ResponseHeadScanner::Status::Error) {
                LOG_ERROR(
                    "upstream sent invalid header while reading response header, "
                    "upstream: %s",
                    addr());
                invalid_head();
                return;
            }
            size_t len = scanner_.head_length();
            std::string_view head = r_.copy(bytes.substr(0, len));
            in.drain(len);
            if (!http::parse_response_head(head, limits_, r_.head.method, resp_)) {
                LOG_ERROR("upstream sent invalid response, upstream: %s", addr());
                invalid_head();
                return;
            }
            if (resp_.informational()) {  // 100, 103: wait for the final response
                scanner_.reset();
                resp_.status = 0;
                continue;
            }
            if (resp_.upgrade) {
                if (!wants_upgrade()) {
                    LOG_ERROR(
                        "upstream sent 101 to a request that did not ask to upgrade, "
                        "upstream: %s",
                        addr());
                    invalid_head();
                    return;
                }
                accept_upgrade();
                return;
            }
            if (uint32_t cond = status_condition(resp_.status);
                cond != 0 && (conf_.retry.mask() & cond) != 0) {
                got_head();
                if (next_upstream(cond, resp_.status, true)) return;
            }
            accept_head();
            return;
        }
    }

    // A 101: the response carries Upgrade and Connection, and the connection becomes a tunnel.
    void accept_upgrade() {
        got_head();
        timer().stop();
        r_.status = 101;
        for (const http::Header& hd : resp_.headers) {
            if (iequals(hd.name, "upgrade")) {
                r_.add_header("Upgrade", hd.value);
            } else if (!is_hop_by_hop(hd.name, resp_.headers) &&
                       !iequals(hd.name, "content-length") && !iequals(hd.name, "date") &&
                       !iequals(hd.name, "server")) {
                r_.add_header(hd.name, hd.value);
            }
        }
        r_.add_header("Connection", "upgrade");
        r_.body = http::ResponseBody{};
        r_.tunnel = this;
        answer();
    }

    // A client Upgrade the proxy passes on (WebSocket and the like). h2c never: an h2c tunnel
    // would let a client speak HTTP/2 straight to the upstream, past every check here
    // ("h2c smuggling").
    bool wants_upgrade() const {
        const http::Header* up = r_.head.find("upgrade");
        return r_.head.upgrade && up != nullptr && !iequals(up->value, "h2c");
    }

    // Decodes the chunked body bytes that arrived with the head, so that framing errors found
    // there are answered with 502 before any of the response reaches the client. Returns false
    // when it answered so.
    bool prefetch_chunked() {
        chunked_.reset();
        Buffer& in = conn_->input();
        for (;;) {
            std::string_view seg = in.front();
            if (seg.empty()) return true;
            auto step = chunked_.next(seg);
            in.drain(step.framing);
            if (step.data > 0) {
                if (!staged_) staged_.emplace();
                staged_->move_from(in, step.data);
            }
            if (step.status == http::ChunkedDecoder::Status::Error) {
                LOG_ERROR("upstream sent invalid chunked response, upstream: %s", addr());
                staged_.reset();
                invalid();
                return false;
            }
            if (step.status == http::ChunkedDecoder::Status::Done) {
                finish(true);
                return true;
            }
            if (step.framing == 0 && step.data == 0) return true;
        }
    }

    void invalid() {
        close_upstream();
        fail(502);
    }

    // A response head that cannot be used (nothing of it reached the client): invalid_header.
    void invalid_head() {
        end_attempt(502);
        us_.peers.failed(peer_, mono_ms());
        close_upstream();
        (void)next_upstream(kRetryInvalidHeader, 502, false);
    }

    bool non_idempotent() const {
        return r_.head.method == http::Method::Post || r_.head.method == http::Method::Patch ||
               r_.head.method_name == "LOCK";
    }

    // The attempt failed with `cond` before any of the response reached the client: go to the
    // next server when proxy_next_upstream and its limits allow (after the backoff), else answer
    // `status`. With `pass_through` (an upstream status such as 503) the connection is still
    // open and, when no retry happens, false is returned so the caller passes that response on;
    // otherwise the exchange has answered or moved on and true is returned.
    bool next_upstream(uint32_t cond, int status, bool pass_through) {
        int64_t now = now_ms();
        RetryFacts f{cond,       request_sent_,    non_idempotent(),
                     body_lost_, attempts_.size(), first_start_ms_,
                     now};
        RetryVerdict v = decide_retry(conf_.retry, f, nullptr, nullptr);
        PickResult pick;
        if (v == RetryVerdict::Retry) pick = us_.peers.pick(r_, tried_);
        int peer = pick.peer;
        if (peer >= 0 && us_.up->retry_budget.enabled &&
            !worker_budget(*us_.up).try_retry(us_.up->retry_budget, now)) {
            us_.peers.release(pick, Outcome::Neutral, mono_ms());  // picked, never used
            v = RetryVerdict::BudgetSpent;
            peer = -1;
        }
        if (peer < 0) {
            if (v != RetryVerdict::Retry && v != RetryVerdict::NotConfigured) {
                std::string_view why = retry_verdict_text(v);
                LOG_INFO("not passing the request to the next upstream (%.*s), upstream: %s",
                         static_cast<int>(why.size()), why.data(), addr());
            }
            if (pass_through) return false;
            fail(status);
            return true;
        }
        if (pass_through) {
            end_attempt(status);
            if (cond != kRetryHttp403 && cond != kRetryHttp404 && cond != kRetryHttp429) {
                us_.peers.failed(peer_, mono_ms());
            }
            close_upstream();
        }
        held_ = pick;  // after end_attempt above released the failed attempt's server
        ++retries_;
        timer().stop();  // the failed attempt's read timeout must not cut the next one short
        uint64_t delay = 0;
        if (conf_.retry.backoff) {
            delay = backoff_delay_ms(*conf_.retry.backoff, retries_, jitter_unit());
            uint64_t limit = conf_.retry.timeout_ms.value_or(0);
            if (limit != 0) {  // never wait past proxy_next_upstream_timeout
                auto left = static_cast<int64_t>(limit) - (now - first_start_ms_);
                delay =
                    std::min<uint64_t>(delay, static_cast<uint64_t>(std::max<int64_t>(left, 0)));
            }
        }
        if (delay > 0) {
            state_ = State::Backoff;
            next_peer_ = static_cast<size_t>(peer);
            timer().start(delay);
            return true;
        }
        connect_to(static_cast<size_t>(peer), false);
        return true;
    }

    // Keeps a copy of request body bytes on their way up, for a retry to send again, while the
    // body fits in kRetryBodyKeep; past that the request is no longer retried once sent.
    void keep_for_retry(const Buffer& chunk) {
        if (!keep_body_) {
            body_lost_ = true;
            return;
        }
        if (!body_copy_) body_copy_.emplace();
        if (body_copy_->size() + chunk.size() > kRetryBodyKeep) {
            body_copy_.reset();
            keep_body_ = false;
            body_lost_ = true;
            return;
        }
        body_copy_->copy_from(chunk);
    }

    // Sends the body bytes a previous attempt sent (the rest follows from read_body()).
    void replay_body() {
        if (chunked_up_) {
            char line[24];
            int n = std::snprintf(line, sizeof(line), "%zx\r\n", body_copy_->size());
            conn_->output().append(std::string_view(line, static_cast<size_t>(n)));
            conn_->output().copy_from(*body_copy_);
            conn_->output().append("\r\n");
        } else {
            conn_->output().copy_from(*body_copy_);
        }
    }

    void accept_head() {
        got_head();
        timer().stop();
        r_.status = resp_.status;
        for (const http::Header& hd : resp_.headers) {
            if (is_hop_by_hop(hd.name, resp_.headers) || iequals(hd.name, "content-length")) {
                continue;
            }
            if (iequals(hd.name, "content-type")) {
                r_.content_type = hd.value;
                continue;
            }
            bool hidden_by_default =
                iequals(hd.name, "date") || iequals(hd.name, "server") ||
                iequals(hd.name, "x-pad") ||
                (hd.name.size() > 8 && iequals(hd.name.substr(0, 8), "x-accel-"));
            if ((hidden_by_default && !in_list(conf_.pass_headers, hd.name)) ||
                in_list(conf_.hide_headers, hd.name)) {
                continue;
            }
            r_.add_header(hd.name, hd.value);
        }
        if (resp_.framing == http::ResponseFraming::ContentLength) {
            r_.content_length = static_cast<int64_t>(resp_.content_length);
            remaining_ = resp_.content_length;
        } else if (const http::Header* cl = resp_.find("content-length");
                   cl != nullptr && r_.head.method == http::Method::Head) {
            r_.content_length = static_cast<int64_t>(std::strtoull(cl->value.data(), nullptr, 10));
        }
        if (resp_.framing == http::ResponseFraming::None ||
            (resp_.framing == http::ResponseFraming::ContentLength && remaining_ == 0)) {
            finish(true);
            r_.body = http::ResponseBody{};
            if (r_.content_length < 0 && r_.head.method != http::Method::Head) {
                r_.content_length = 0;
            }
        } else if (resp_.framing == http::ResponseFraming::Chunked && !prefetch_chunked()) {
            return;  // the body that came with the head is malformed: answered 502
        } else if (state_ == State::Done) {
            // The whole chunked body came with the head: send it with a length.
            r_.content_length = static_cast<int64_t>(staged_ ? staged_->size() : 0);
            r_.body.kind = http::BodyKind::Stream;
            r_.body.source = this;
        } else {
            state_ = State::Streaming;
            r_.body.kind = http::BodyKind::Stream;
            r_.body.source = this;
            timer().start(conf_.read_timeout());
        }
        answer();
    }

    // The response (or an error) is set on the request: hand it to the worker.
    void answer() {
        answered_ = true;
        if (!in_handler_) r_.resume(Verdict::Respond);
    }

    void fail(int status) {
        if (status >= 500) end_attempt(status);  // $upstream_status, as nginx
        state_ = State::Done;
        timer().stop();
        close_upstream();
        r_.task = nullptr;
        (void)r_.respond_error(status);
        if (retry_after_s_ > 0) {
            char buf[24];
            int n = std::snprintf(buf, sizeof(buf), "%lld", static_cast<long long>(retry_after_s_));
            r_.add_header("Retry-After", r_.copy(std::string_view(buf, static_cast<size_t>(n))));
        }
        answer();
    }

    void abort_quietly() {
        state_ = State::Done;
        timer().stop();
        close_upstream();
        r_.task = nullptr;
    }

    // The response is over (`ok`: complete); keep the connection if it can serve again.
    void finish(bool ok) {
        end_attempt(0);
        timer().stop();
        state_ = State::Done;
        r_.task = nullptr;
        if (ok) us_.peers.succeeded(peer_);
        bool reusable = ok && conn_ != nullptr && us_.pool && resp_.keep_alive && body_done_ &&
                        conn_->input().empty() && conn_->output().empty() &&
                        conn_requests_ < us_.up->keepalive_requests;
        if (reusable) {
            us_.pool->park(peer_, ssl_, conn_requests_, std::move(conn_));
        } else {
            close_upstream();
        }
    }

    void on_timeout() {
        if (state_ == State::Backoff) {
            connect_to(next_peer_, false);
            return;
        }
        if (state_ == State::Tunnel) {
            end_tunnel();  // idle for proxy_read_timeout
            return;
        }
        if (state_ == State::Streaming) {
            LOG_ERROR("upstream timed out while reading upstream, upstream: %s", addr());
            failed_ = true;
            close_upstream();
            if (waiting_) {
                waiting_ = false;
                r_.body_ready();
            }
            return;
        }
        LOG_ERROR(
            "upstream timed out while reading response header from upstream, "
            "upstream: %s",
            addr());
        end_attempt(504);
        us_.peers.failed(peer_, mono_ms());
        close_upstream();
        (void)next_upstream(kRetryTimeout, 504, false);
    }

    void close_upstream() { conn_.reset(); }

    const char* addr() const { return us_.up->servers[peer_].addr_text.c_str(); }

    void got_head() {
        Attempt& a = attempts_.back();
        a.status = resp_.status;
        a.header_usec = http::now_usec() - a.start_usec;
    }

    // The current attempt is over; `status` is its status unless it already has one.
    void end_attempt(int status) {
        if (attempts_.empty() || attempts_.back().end_usec != 0) return;
        Attempt& a = attempts_.back();
        if (a.status == 0) a.status = status;
        a.end_usec = http::now_usec();
        release_peer(a.status == 0    ? Outcome::Neutral
                     : a.status < 500 ? Outcome::Success
                                      : Outcome::Failure);
    }

    // The server this request counted on is done with: the count, a half-open probe slot, and
    // the breaker's verdict go back (once).
    void release_peer(Outcome o) {
        if (held_.peer < 0) return;
        us_.peers.release(held_, o, mono_ms());
        held_ = PickResult{};
    }

    http::Request& r_;
    const ProxyLocConf& conf_;
    UpstreamState& us_;
    std::pmr::vector<bool> tried_;
    std::pmr::vector<Attempt> attempts_;
    http::ResponseLimits limits_;
    http::ResponseHeadScanner scanner_;
    http::ResponseHead resp_;
    http::ChunkedDecoder chunked_;
    ExchangeTimer* timer_;
    std::unique_ptr<Stream> conn_;
    Stream* client_ = nullptr;
    std::string_view target_override_;
    std::string_view host_override_;
    bool ssl_ = conf_.pass_ssl;  // TLS to the upstream (per request with variables)
    std::string_view tls_host_;  // with variables: the URL's host, for SNI and verification
    ClientSide client_side_{this};
    State state_ = State::Connecting;
    size_t peer_ = 0;
    PickResult held_;            // the pick counted on peer_, released when the attempt ends
    int64_t retry_after_s_ = 0;  // a 503 because every breaker is open: Retry-After
    size_t next_peer_ = 0;       // the server a retry goes to after its backoff
    uint32_t retries_ = 0;
    int64_t first_start_ms_ = 0;
    uint64_t conn_requests_ = 0;
    uint64_t remaining_ = 0;
    // Chunked body bytes decoded while checking them before the head is sent; made on first use,
    // as is body_chunk_ (request body bytes on their way up): most requests need neither.
    std::optional<Buffer> staged_;
    std::optional<Buffer> body_chunk_;
    std::optional<Buffer> body_copy_;  // the request body sent so far, kept for a retry
    bool in_handler_ = false;
    bool answered_ = false;
    bool reused_ = false;
    bool got_bytes_ = false;
    bool chunked_up_ = false;
    bool body_done_ = false;
    bool body_started_ = false;
    bool request_sent_ = false;  // some attempt sent (part of) the request
    bool keep_body_ = false;     // body bytes are copied for a retry
    bool body_lost_ = false;     // body bytes went up without a copy: no retry
    bool pumping_ = false;
    bool waiting_ = false;
    bool failed_ = false;
    bool upstream_eof_ = false;
};

const Exchange* exchange_of(http::Request& r) {
    return static_cast<const Exchange*>(r.module_ctx(proxy_index()));
}

void append_seconds(std::pmr::string& out, int64_t usec) {
    if (usec < 0) {
        out += '-';
        return;
    }
    char buf[32];
    int n = std::snprintf(buf, sizeof(buf), "%lld.%03lld", static_cast<long long>(usec / 1000000),
                          static_cast<long long>((usec / 1000) % 1000));
    out.append(buf, static_cast<size_t>(n));
}

// Joins one field of every attempt with ", " into the request arena.
template <typename Field>
bool join_attempts(http::Request& r, std::string_view& out, Field field) {
    const Exchange* ex = exchange_of(r);
    if (ex == nullptr || ex->attempts().empty()) return false;
    std::pmr::string s(r.arena);
    for (const Exchange::Attempt& a : ex->attempts()) {
        if (!s.empty()) s += ", ";
        field(s, a);
    }
    out = r.copy(s);
    return true;
}

bool v_upstream_addr(http::Request& r, std::string_view, uintptr_t, std::string_view& out) {
    return join_attempts(r, out,
                         [](std::pmr::string& s, const Exchange::Attempt& a) { s += a.addr; });
}
bool v_upstream_status(http::Request& r, std::string_view, uintptr_t, std::string_view& out) {
    return join_attempts(r, out, [](std::pmr::string& s, const Exchange::Attempt& a) {
        if (a.status == 0) {
            s += '-';
        } else {
            char buf[8];
            int n = std::snprintf(buf, sizeof(buf), "%d", a.status);
            s.append(buf, static_cast<size_t>(n));
        }
    });
}
bool v_upstream_time(http::Request& r, std::string_view, uintptr_t which, std::string_view& out) {
    return join_attempts(r, out, [which](std::pmr::string& s, const Exchange::Attempt& a) {
        int64_t end = a.end_usec != 0 ? a.end_usec : http::now_usec();
        append_seconds(s, which == 0   ? end - a.start_usec
                          : which == 1 ? a.connect_usec
                                       : a.header_usec);
    });
}
bool v_upstream_http(http::Request& r, std::string_view name, uintptr_t, std::string_view& out) {
    const Exchange* ex = exchange_of(r);
    if (ex == nullptr || !ex->has_response()) return false;
    for (const http::Header& h : ex->response().headers) {
        if (h.name.size() != name.size()) continue;
        bool same = true;
        for (size_t i = 0; i < name.size() && same; ++i) {
            char a = static_cast<char>(std::tolower(static_cast<unsigned char>(h.name[i])));
            same = (a == '-' ? '_' : a) == name[i];
        }
        if (same) {
            out = h.value;
            return true;
        }
    }
    return false;
}
bool v_proxy_host(http::Request& r, std::string_view, uintptr_t, std::string_view& out) {
    if (r.location == nullptr) return false;
    const auto& c = static_cast<const ProxyLocConf&>(*r.location_conf(proxy_index()));
    if (!c.pass) return false;
    out = c.proxy_host;
    return true;
}
bool v_proxy_add_xff(http::Request& r, std::string_view, uintptr_t, std::string_view& out) {
    std::pmr::string s(r.arena);
    for (const http::Header& h : r.head.headers) {  // every X-Forwarded-For, in order
        if (iequals(h.name, "x-forwarded-for") && !h.value.empty()) {
            s += h.value;
            s += ", ";
        }
    }
    s += r.conn.remote_addr;
    out = r.copy(s);
    return true;
}

}  // namespace

// This worker's ledger rows (UpstreamShm::claim_row), given back at exit.
std::vector<std::pair<UpstreamShm*, LedgerRow*>> g_ledger_rows;

void init_worker(const ConfigGeneration& generation, EventLoop& loop) {
    const auto& main = static_cast<const ProxyMainConf&>(*generation.main_confs[proxy_index()]);
    g_worker = new WorkerState();
    g_worker->loop = &loop;
    g_worker->upstreams.resize(main.upstreams.size());
    for (const auto& up : main.upstreams) {
        UpstreamState& us = g_worker->upstreams[up->index];
        us.up = up.get();
        UpstreamShm* shm =
            UpstreamShm::attach(up->zone->data(), static_cast<uint32_t>(up->servers.size()));
        us.peers.bind(*up, shm,
                      static_cast<uint64_t>(getpid()) * 0x9e3779b97f4a7c15ULL + up->index);
        LedgerRow* row = shm->claim_row();
        if (row == nullptr) {
            LOG_NOTICE(
                "upstream \"%s\": no free ledger row; a crash of this worker would leave "
                "its requests counted",
                up->name.c_str());
        }
        us.peers.set_ledger(row);
        g_ledger_rows.emplace_back(shm, row);
        if (up->keepalive > 0) us.pool = std::make_unique<Pool>(*up, loop);
    }
    g_worker->health = start_health_checks(main, loop);
}

void exit_worker(const ConfigGeneration&) {
    delete g_worker;  // closes the idle upstream connections and frees their timers
    g_worker = nullptr;
    // Last: what is still counted (requests cut off by worker_shutdown_timeout) goes back.
    for (auto [shm, row] : g_ledger_rows) shm->release_row(row);
    g_ledger_rows.clear();
}

namespace {

template <class T>
void destroy(void* p) {
    static_cast<T*>(p)->~T();
}

template <class T, class... Args>
T* make_in_arena(http::Request& r, Args&&... args) {
    void* mem = r.arena->allocate(sizeof(T), alignof(T));
    T* obj = new (mem) T(std::forward<Args>(args)...);
    r.add_cleanup(destroy<T>, obj);
    return obj;
}

Exchange* make_exchange(http::Request& r, const ProxyLocConf& conf, UpstreamState& us) {
    Exchange* ex = make_in_arena<Exchange>(r, r, conf, us);
    r.set_module_ctx(proxy_index(), ex);
    return ex;
}

// A one-off upstream for a host a proxy_pass with variables named (no keepalive pool).
struct DynamicUpstream {
    Upstream up;
    std::optional<PrivatePeerState> shared;  // not shared: one request uses it
    UpstreamState state;
    DynamicUpstream(std::string_view name, const std::vector<sockaddr_storage>& addrs,
                    uint16_t port) {
        up.name = std::string(name);
        up.implicit = true;
        for (const sockaddr_storage& a : addrs) {
            UpstreamServer s;
            s.addr = a;
            char buf[INET6_ADDRSTRLEN] = "";
            if (a.ss_family == AF_INET6) {
                auto* sin6 = reinterpret_cast<sockaddr_in6*>(&s.addr);
                sin6->sin6_port = htons(port);
                s.addr_len = sizeof(sockaddr_in6);
                inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf));
                s.addr_text = "[" + std::string(buf) + "]:" + std::to_string(port);
            } else {
                auto* sin = reinterpret_cast<sockaddr_in*>(&s.addr);
                sin->sin_port = htons(port);
                s.addr_len = sizeof(sockaddr_in);
                inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf));
                s.addr_text = std::string(buf) + ":" + std::to_string(port);
            }
            s.max_fails = 0;  // a one-off: nothing to remember failures for
            up.servers.push_back(s);
        }
        state.up = &up;
        shared.emplace(static_cast<uint32_t>(up.servers.size()));
        state.peers.bind(up, shared->get(), 1);
    }
};

// The parts of an evaluated proxy_pass URL.
struct DynamicTarget {
    bool ssl = false;  // https://
    std::string_view host;
    uint16_t port = 80;
    bool port_given = false;
    std::string_view authority;  // Host header
    std::string_view target;     // the URI part: replaces the request URI when not empty
};

bool parse_dynamic_url(std::string_view url, DynamicTarget& out) {
    if (url.substr(0, 8) == "https://") {
        out.ssl = true;
        out.port = 443;
        url.remove_prefix(8);
    } else if (url.substr(0, 7) == "http://") {
        url.remove_prefix(7);
    } else {
        return false;
    }
    size_t slash = url.find_first_of("/?");
    out.authority = url.substr(0, slash);
    if (slash != std::string_view::npos) out.target = url.substr(slash);
    if (!out.target.empty() && out.target.front() == '?') return false;
    std::string_view a = out.authority;
    size_t colon = a.rfind(':');
    if (!a.empty() && a.front() == '[') {
        size_t close = a.find(']');
        if (close == std::string_view::npos) return false;
        colon = close + 1 < a.size() ? close + 1 : std::string_view::npos;
        out.host = a.substr(1, close - 1);
    } else {
        out.host = a.substr(0, colon);
    }
    if (colon != std::string_view::npos) {
        std::string_view p = a.substr(colon + 1);
        unsigned v = 0;
        if (p.empty() || p.size() > 5) return false;
        for (char c : p) {
            if (c < '0' || c > '9') return false;
            v = v * 10 + static_cast<unsigned>(c - '0');
        }
        if (v == 0 || v > 65535) return false;
        out.port = static_cast<uint16_t>(v);
        out.port_given = true;
    }
    return !out.host.empty();
}

bool parse_ip(std::string_view host, sockaddr_storage& out) {
    std::string h(host);
    auto* sin = reinterpret_cast<sockaddr_in*>(&out);
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&out);
    std::memset(&out, 0, sizeof(out));
    if (inet_pton(AF_INET, h.c_str(), &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, h.c_str(), &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        return true;
    }
    return false;
}

Verdict start_dynamic(http::Request& r, const ProxyLocConf& conf, const DynamicTarget& t,
                      const std::vector<sockaddr_storage>& addrs) {
    auto* dyn = make_in_arena<DynamicUpstream>(r, t.authority, addrs, t.port);
    Exchange* ex = make_exchange(r, conf, dyn->state);
    ex->set_overrides(t.target, t.authority);
    ex->set_tls(t.ssl, t.host);
    return ex->start();
}

// A request waiting for a proxy_pass host to be looked up. Requests for a name already being
// looked up wait on that one query (as nginx), and the answer serves them all.
class PendingLookup final : public http::RequestTask {
  public:
    PendingLookup(http::Request& r, const ProxyLocConf& conf, const DynamicTarget& t)
        : r_(r), conf_(conf), target_(t), host_(t.host) {}

    // Joins or starts the lookup of the host. Returns the handler's verdict: Suspend, or
    // Respond when the resolver answered at once (it could not even send the query).
    Verdict wait_on(WorkerResolver& wr, uint64_t valid_ms) {
        r_.task = this;
        wr_ = &wr;
        auto [it, fresh] = wr.inflight.try_emplace(host_);
        it->second.waiters.push_back(this);
        if (!fresh) return Verdict::Suspend;
        it->second.valid_ms = valid_ms;
        in_begin_ = true;
        WorkerResolver* w = &wr;
        std::string host = host_;
        auto lookup = wr.resolver->lookup(
            host, [w, host](const Resolver::Answer& a) { deliver(*w, host, a); });
        if (auto again = wr.inflight.find(host); again != wr.inflight.end()) {
            again->second.lookup = std::move(lookup);
        }
        in_begin_ = false;
        return answered_now_ ? Verdict::Respond : Verdict::Suspend;
    }

    // The client went away: stop waiting (the query goes on and fills the cache).
    void abort() override {
        auto it = wr_->inflight.find(host_);
        if (it == wr_->inflight.end()) return;
        auto& w = it->second.waiters;
        w.erase(std::remove(w.begin(), w.end(), this), w.end());
    }

    // Hands an answer to every request waiting for `host`, and caches it.
    static void deliver(WorkerResolver& wr, const std::string& host, const Resolver::Answer& a) {
        auto it = wr.inflight.find(host);
        if (it == wr.inflight.end()) return;
        std::vector<PendingLookup*> waiters = std::move(it->second.waiters);
        uint64_t valid_ms = it->second.valid_ms;
        std::unique_ptr<Resolver::Lookup> done = std::move(it->second.lookup);
        wr.inflight.erase(it);
        if (!a.ok) {
            LOG_ERROR("%s could not be resolved (%s)", host.c_str(), a.error.c_str());
        } else {
            if (wr.cache.size() >= kMaxCachedNames) wr.cache.clear();
            uint64_t ttl_ms = valid_ms != 0 ? valid_ms : uint64_t{a.ttl} * 1000;
            wr.cache[host] = {a.addresses, now_ms() + static_cast<int64_t>(ttl_ms)};
        }
        for (PendingLookup* p : waiters) p->answered(a);
    }

  private:
    void answered(const Resolver::Answer& a) {
        r_.task = nullptr;
        if (!a.ok) {
            (void)r_.respond_error(502);
            respond();
            return;
        }
        if (start_dynamic(r_, conf_, target_, a.addresses) == Verdict::Respond) respond();
    }

    void respond() {
        if (in_begin_) {
            answered_now_ = true;
        } else {
            r_.resume(Verdict::Respond);
        }
    }

    http::Request& r_;
    const ProxyLocConf& conf_;
    DynamicTarget target_;
    std::string host_;
    WorkerResolver* wr_ = nullptr;
    bool in_begin_ = false;
    bool answered_now_ = false;
};

// proxy_pass with variables, as nginx: an upstream block by that name, else an IP address,
// else a name looked up with `resolver` (cached per worker).
Verdict proxy_dynamic(http::Request& r, const ProxyLocConf& conf) {
    std::string_view url = conf.pass_value.evaluate(r);
    DynamicTarget t;
    if (!parse_dynamic_url(url, t)) {
        LOG_ERROR("invalid URL \"%.*s\" in proxy_pass", static_cast<int>(url.size()), url.data());
        return r.respond_error(500);
    }
    if (t.ssl && !conf.ssl.built) {  // a literal http:// prefix cannot evaluate to https://
        LOG_ERROR("no TLS context for \"%.*s\" in proxy_pass", static_cast<int>(url.size()),
                  url.data());
        return r.respond_error(500);
    }
    if (!t.port_given) {
        for (UpstreamState& us : g_worker->upstreams) {
            if (!us.up->implicit && iequals(us.up->name, t.host)) {  // nginx: any case
                Exchange* ex = make_exchange(r, conf, us);
                ex->set_overrides(t.target, t.authority);
                ex->set_tls(t.ssl, t.host);
                return ex->start();
            }
        }
    }
    sockaddr_storage ip;
    if (parse_ip(t.host, ip)) return start_dynamic(r, conf, t, {ip});
    if (!conf.resolver) {
        LOG_ERROR("no resolver defined to resolve %.*s", static_cast<int>(t.host.size()),
                  t.host.data());
        return r.respond_error(502);
    }
    auto key = std::make_pair(conf.resolver.get(), conf.resolver_timeout());
    WorkerResolver& wr = g_worker->resolvers[key];
    if (!wr.resolver) {
        std::string error;
        wr.resolver = g_worker->loop->make_resolver(conf.resolver->servers, conf.resolver_timeout(),
                                                    conf.resolver->ipv6, error);
        if (!wr.resolver) {
            LOG_ERROR("resolver: %s", error.c_str());
            return r.respond_error(502);
        }
    }
    std::string host(t.host);
    auto it = wr.cache.find(host);
    if (it != wr.cache.end() && it->second.expires_ms > now_ms()) {
        return start_dynamic(r, conf, t, it->second.addresses);
    }
    // Copy the views: they must outlive this call.
    t.host = r.copy(t.host);
    t.authority = r.copy(t.authority);
    t.target = r.copy(t.target);
    auto* p = make_in_arena<PendingLookup>(r, r, conf, t);
    return p->wait_on(wr, conf.resolver->valid_ms.value_or(0));
}

}  // namespace

Verdict proxy_handler(http::Request& r, const void* data) {
    const auto& conf = *static_cast<const ProxyLocConf*>(data);
    if (conf.pass_dynamic) return proxy_dynamic(r, conf);
    return make_exchange(r, conf, g_worker->upstreams[conf.upstream->index])->start();
}

void register_variables(VariableRegistry& reg) {
    reg.add("upstream_addr", v_upstream_addr, 0, false);
    reg.add("upstream_status", v_upstream_status, 0, false);
    reg.add("upstream_response_time", v_upstream_time, 0, false);
    reg.add("upstream_connect_time", v_upstream_time, 1, false);
    reg.add("upstream_header_time", v_upstream_time, 2, false);
    reg.add_prefix("upstream_http_", v_upstream_http);
    reg.add("proxy_host", v_proxy_host);
    reg.add("proxy_add_x_forwarded_for", v_proxy_add_xff);
}

}  // namespace tollgate::proxy
