// What a module may ask of its worker's event loop, without including libevent: timers now,
// outgoing connections once the proxy needs them. The worker implements it (worker/worker.cpp)
// and hands it to Module::init_worker; tests can hand a fake.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <memory>

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

class EventLoop {
  public:
    virtual ~EventLoop() = default;
    // A stopped timer that runs `on_fire` on the loop when it expires.
    virtual std::unique_ptr<Timer> make_timer(std::function<void()> on_fire) = 0;
    // Starts a non-blocking TCP connect; `handler` then gets on_connected() or
    // on_stream_event(Error or ConnectTimeout). Returns nullptr if no socket could be made.
    virtual std::unique_ptr<Stream> connect(const sockaddr* addr, socklen_t len,
                                            StreamHandler& handler, uint64_t timeout_ms) = 0;
};

}  // namespace tollgate
