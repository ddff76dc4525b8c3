// The "core" module: main-context directives the master and workers obey.
//   worker_processes N|auto; pid FILE; user USER [GROUP]; error_log FILE [LEVEL]; daemon on|off;
//   worker_shutdown_timeout TIME; worker_rlimit_nofile N; events { worker_connections N; }
//   state_path DIR;  the folder for persistent state (quota counters); relative to the prefix;
//                    default TOLLGATE_DEFAULT_STATE_PATH (/var/lib/tollgate). Modules that keep
//                    state there make it in their init_master (ensure_state_directory).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/generation.hpp"
#include "core/log.hpp"
#include "core/module.hpp"

namespace tollgate {

struct CoreConf : ModuleConf {
    std::optional<int> worker_processes;  // unset: 1 (nginx's default)
    std::optional<std::string> pid_path;  // absolute once the generation is built
    std::optional<std::string> user;
    std::optional<std::string> group;
    std::optional<std::string> error_log_path;  // absolute or "stderr"
    log::Level error_log_level = log::Level::Error;
    std::optional<bool> daemon;
    std::optional<uint64_t> worker_shutdown_timeout_ms;  // unset: wait for in-flight work
    std::optional<uint64_t> worker_rlimit_nofile;
    std::optional<uint32_t> worker_connections;
    std::optional<std::string> state_path;  // absolute once the generation is built, no '/' at end
    bool events_seen = false;

    int workers() const { return worker_processes.value_or(1); }
    uint32_t connections() const { return worker_connections.value_or(512); }
};

extern const Module core_module;

// In the master: makes folder `dir` (and missing parents) if it does not exist, mode 0750, and
// gives it to the workers' user when they drop privileges, so workers can create files in it.
// A folder that already exists is given to them only when it is empty.
// Returns false with `error` ("mkdir(\"DIR\") failed (REASON)").
bool ensure_state_directory(const std::string& dir, const WorkerOwner& owner, std::string& error);

// The core config of a generation.
inline const CoreConf& core_conf(const ConfigGeneration& gen) {
    return gen.main_conf<CoreConf>(module_index(core_module));
}
}  // namespace tollgate
