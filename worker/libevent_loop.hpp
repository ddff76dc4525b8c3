// The worker's EventLoop (core/event_loop.hpp) on a libevent event_base.
#pragma once

#include "core/event_loop.hpp"

struct event_base;

namespace tollgate::worker {

class LibeventLoop final : public EventLoop {
  public:
    explicit LibeventLoop(event_base* base) : base_(base) {}
    std::unique_ptr<Timer> make_timer(std::function<void()> on_fire) override;
    std::unique_ptr<Stream> connect(const sockaddr* addr, socklen_t len, StreamHandler& handler,
                                    uint64_t timeout_ms) override;
    std::unique_ptr<Stream> connect_tls(const sockaddr* addr, socklen_t len, StreamHandler& handler,
                                        uint64_t timeout_ms, const TlsClientOptions& tls) override;
    std::unique_ptr<Resolver> make_resolver(const std::vector<std::string>& servers,
                                            uint64_t timeout_ms, bool ipv6,
                                            std::string& error) override;
    std::unique_ptr<RedisClient> make_redis(const RedisOptions& options) override;

  private:
    event_base* base_;
};

}  // namespace tollgate::worker
