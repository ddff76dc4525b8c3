#include "core/redis.hpp"

namespace tollgate {

const char* to_string(RedisError e) {
    switch (e) {
        case RedisError::None:
            return "ok";
        case RedisError::Server:
            return "server error";
        case RedisError::Timeout:
            return "timeout";
        case RedisError::ConnectionLost:
            return "connection lost";
        case RedisError::Unavailable:
            return "not connected";
        case RedisError::QueueFull:
            return "too many pending commands";
    }
    return "unknown";
}

RedisReply RedisReply::failure(RedisError e) {
    RedisReply r;
    r.error_ = e;
    r.type_ = Type::Error;
    r.str_ = to_string(e);
    return r;
}

}  // namespace tollgate
