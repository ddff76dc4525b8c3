#include "worker/libevent_loop.hpp"

#include <event2/event.h>

#include "worker/socket_stream.hpp"

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

}  // namespace tollgate::worker
