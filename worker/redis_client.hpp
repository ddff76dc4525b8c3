// RedisClient (core/redis.hpp) on hiredis's async API and its libevent adapter.
#pragma once

#include <memory>

#include "core/event_loop.hpp"
#include "core/redis.hpp"

struct event_base;

namespace tollgate::worker {

// Makes a client on `base`; `loop` (the same base) provides its timers. It starts connecting
// at once. Must be destroyed outside its own callbacks, before `base`.
std::unique_ptr<RedisClient> make_redis_client(event_base* base, EventLoop& loop,
                                               const RedisOptions& options);

}  // namespace tollgate::worker
