// The proxy runtime: one Exchange per proxied request, per-worker upstream state (balancer
// and keepalive pool). Reads only the config structs from proxy_config.hpp.
#pragma once

#include "core/event_loop.hpp"
#include "core/generation.hpp"
#include "core/http/request.hpp"
#include "modules/proxy/proxy_config.hpp"

namespace tollgate::proxy {

void init_worker(const ConfigGeneration& generation, EventLoop& loop);
void exit_worker(const ConfigGeneration& generation);
// The content handler of a location with proxy_pass; `data` is its ProxyLocConf.
Verdict proxy_handler(http::Request& r, const void* data);
void register_variables(VariableRegistry& registry);

}  // namespace tollgate::proxy
