#include "worker/libevent_loop.hpp"

#include <event2/dns.h>
#include <event2/event.h>

#include <cstdio>
#include <cstring>

#include "worker/redis_client.hpp"
#include "worker/socket_stream.hpp"
#include "worker/tls_stream.hpp"

namespace tollgate::worker {

namespace {

class LibeventTimer final : public Timer {
  public:
    LibeventTimer(event_base* base, std::function<void()> on_fire)
        : on_fire_(std::move(on_fire)), ev_(evtimer_new(base, on_timer, this)) {}
    ~LibeventTimer() override {
        if (ev_ != nullptr) event_free(ev_);
    }
    void start(uint64_t ms) override {
        timeval tv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
        evtimer_add(ev_, &tv);
    }
    void stop() override { evtimer_del(ev_); }
    bool running() const override { return evtimer_pending(ev_, nullptr) != 0; }

  private:
    static void on_timer(int, short, void* arg) { static_cast<LibeventTimer*>(arg)->on_fire_(); }
    std::function<void()> on_fire_;
    event* ev_;
};

}  // namespace

std::unique_ptr<Timer> LibeventLoop::make_timer(std::function<void()> on_fire) {
    return std::make_unique<LibeventTimer>(base_, std::move(on_fire));
}

std::unique_ptr<Stream> LibeventLoop::connect(const sockaddr* addr, socklen_t len,
                                              StreamHandler& handler, uint64_t timeout_ms) {
    return SocketStream::connect(base_, addr, len, handler, timeout_ms);
}

std::unique_ptr<RedisClient> LibeventLoop::make_redis(const RedisOptions& options) {
    return make_redis_client(base_, *this, options);
}

std::unique_ptr<Stream> LibeventLoop::connect_tls(const sockaddr* addr, socklen_t len,
                                                  StreamHandler& handler, uint64_t timeout_ms,
                                                  const TlsClientOptions& tls) {
    return TlsStream::connect(base_, addr, len, tls, handler, timeout_ms);
}

}  // namespace tollgate::worker

// ---- DNS --------------------------------------------------------------------------------------

namespace tollgate::worker {

namespace {

// One lookup: its A (and AAAA) queries. Owned by the evdns callbacks: the last one to finish
// frees it, so a cancelled lookup is freed only when evdns is done with it.
struct DnsState {
    std::function<void(const Resolver::Answer&)> done;
    Resolver::Answer answer;
    int pending = 0;
    bool cancelled = false;
    bool any_ok = false;
    evdns_base* dns = nullptr;
    evdns_request* requests[2] = {nullptr, nullptr};
};

void on_dns(int result, char type, int count, int ttl, void* addresses, void* arg) {
    auto* st = static_cast<DnsState*>(arg);
    if (result == DNS_ERR_NONE && count > 0) {
        for (int i = 0; i < count; ++i) {
            sockaddr_storage ss{};
            if (type == DNS_IPv4_A) {
                auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
                sin->sin_family = AF_INET;
                std::memcpy(&sin->sin_addr, static_cast<char*>(addresses) + 4 * i, 4);
            } else if (type == DNS_IPv6_AAAA) {
                auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
                sin6->sin6_family = AF_INET6;
                std::memcpy(&sin6->sin6_addr, static_cast<char*>(addresses) + 16 * i, 16);
            } else {
                continue;
            }
            st->answer.addresses.push_back(ss);
        }
        uint32_t t = ttl > 0 ? static_cast<uint32_t>(ttl) : 0;
        st->answer.ttl = st->any_ok ? std::min(st->answer.ttl, t) : t;
        st->any_ok = true;
    } else if (st->answer.error.empty() && result != DNS_ERR_NONE) {
        st->answer.error = evdns_err_to_string(result);
    }
    if (--st->pending > 0) return;
    if (!st->cancelled) {
        st->answer.ok = !st->answer.addresses.empty();
        if (st->answer.ok) {
            st->answer.error.clear();
        } else if (st->answer.error.empty()) {
            st->answer.error = "no addresses";
        }
        st->done(st->answer);
    }
    delete st;
}

class EvdnsLookup final : public Resolver::Lookup {
  public:
    explicit EvdnsLookup(DnsState* st) : st_(st) {}
    // Called from done(): the state is finishing on its own.
    void release() { st_ = nullptr; }
    ~EvdnsLookup() override {
        if (st_ == nullptr) return;
        st_->cancelled = true;
        for (evdns_request* r : st_->requests) {
            if (r != nullptr) evdns_cancel_request(st_->dns, r);
        }
    }

  private:
    DnsState* st_;
};

class EvdnsResolver final : public Resolver {
  public:
    EvdnsResolver(evdns_base* dns, bool ipv6) : dns_(dns), ipv6_(ipv6) {}
    ~EvdnsResolver() override { evdns_base_free(dns_, 1); }  // fails pending requests

    std::unique_ptr<Lookup> lookup(const std::string& host,
                                   std::function<void(const Answer&)> done) override {
        auto* st = new DnsState();
        st->dns = dns_;
        auto handle = std::make_unique<EvdnsLookup>(st);
        EvdnsLookup* raw = handle.get();
        st->done = [raw, done = std::move(done)](const Answer& a) {
            raw->release();
            done(a);
        };
        st->pending = ipv6_ ? 2 : 1;
        int issued = 0;
        st->requests[0] =
            evdns_base_resolve_ipv4(dns_, host.c_str(), DNS_QUERY_NO_SEARCH, on_dns, st);
        if (st->requests[0] != nullptr) ++issued;
        if (ipv6_) {
            st->requests[1] =
                evdns_base_resolve_ipv6(dns_, host.c_str(), DNS_QUERY_NO_SEARCH, on_dns, st);
            if (st->requests[1] != nullptr) ++issued;
        }
        // A query that could not even be issued will not call back: account for it.
        st->pending = issued;
        if (issued == 0) {
            Answer a;
            a.error = "cannot start the query";
            raw->release();
            delete st;
            done(a);  // the caller's callback, run now: callers must allow that
            return nullptr;
        }
        return handle;
    }

  private:
    evdns_base* dns_;
    bool ipv6_;
};

}  // namespace

std::unique_ptr<Resolver> LibeventLoop::make_resolver(const std::vector<std::string>& servers,
                                                      uint64_t timeout_ms, bool ipv6,
                                                      std::string& error) {
    evdns_base* dns = evdns_base_new(base_, 0);
    if (dns == nullptr) {
        error = "evdns_base_new() failed";
        return nullptr;
    }
    char timeout[32];
    std::snprintf(timeout, sizeof(timeout), "%.3f", static_cast<double>(timeout_ms) / 1000.0);
    evdns_base_set_option(dns, "timeout:", timeout);
    evdns_base_set_option(dns, "attempts:", "1");  // resolver_timeout bounds the whole lookup
    evdns_base_set_option(dns, "randomize-case:", "0");
    for (const std::string& s : servers) {
        if (evdns_base_nameserver_ip_add(dns, s.c_str()) != 0) {
            error = "invalid resolver address \"" + s + "\"";
            evdns_base_free(dns, 0);
            return nullptr;
        }
    }
    return std::make_unique<EvdnsResolver>(dns, ipv6);
}

}  // namespace tollgate::worker
