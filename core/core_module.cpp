#include "core/core_module.hpp"

#include <dirent.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/config/error.hpp"
#include "core/generation.hpp"

namespace tollgate {

namespace {

void set_worker_processes(DirectiveContext& ctx) {
    auto& c = ctx.conf<CoreConf>();
    if (c.worker_processes) ctx.duplicate();
    if (ctx.arg(0) == "auto") {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c.worker_processes = n > 0 ? static_cast<int>(n) : 1;
    } else {
        c.worker_processes = static_cast<int>(ctx.int_arg(0, 1, 1024));
    }
}

void set_pid(DirectiveContext& ctx) {
    auto& c = ctx.conf<CoreConf>();
    if (c.pid_path) ctx.duplicate();
    c.pid_path = ctx.builder.prefix_path(ctx.arg(0));
}

void set_user(DirectiveContext& ctx) {
    auto& c = ctx.conf<CoreConf>();
    if (c.user) ctx.duplicate();
    c.user = ctx.arg(0);
    if (ctx.nargs() > 1) c.group = ctx.arg(1);
    // As nginx: the names must exist when the master runs as root (it is the one switching).
    if (ctx.builder.options().running_as_root) {
        if (getpwnam(c.user->c_str()) == nullptr) ctx.fail("getpwnam(\"" + *c.user + "\") failed");
        if (c.group && getgrnam(c.group->c_str()) == nullptr) {
            ctx.fail("getgrnam(\"" + *c.group + "\") failed");
        }
    }
}

void set_error_log(DirectiveContext& ctx) {
    auto& c = ctx.conf<CoreConf>();
    if (c.error_log_path) ctx.duplicate();
    c.error_log_path = ctx.arg(0) == "stderr" ? "stderr" : ctx.builder.prefix_path(ctx.arg(0));
    if (ctx.nargs() > 1 && !log::parse_level(ctx.arg(1), c.error_log_level)) {
        ctx.invalid_value(1);
    }
}

void set_state_path(DirectiveContext& ctx) {
    auto& c = ctx.conf<CoreConf>();
    if (c.state_path) ctx.duplicate();
    if (ctx.arg(0).empty()) ctx.invalid_value(0);
    std::string path = ctx.builder.prefix_path(ctx.arg(0));
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    c.state_path = path;
}

void set_daemon(DirectiveContext& ctx) {
    auto& c = ctx.conf<CoreConf>();
    if (c.daemon) ctx.duplicate();
    c.daemon = ctx.flag_arg(0);
}

void set_worker_shutdown_timeout(DirectiveContext& ctx) {
    auto& c = ctx.conf<CoreConf>();
    if (c.worker_shutdown_timeout_ms) ctx.duplicate();
    c.worker_shutdown_timeout_ms = ctx.time_ms_arg(0);
}

void set_worker_rlimit_nofile(DirectiveContext& ctx) {
    auto& c = ctx.conf<CoreConf>();
    if (c.worker_rlimit_nofile) ctx.duplicate();
    c.worker_rlimit_nofile = ctx.int_arg(0, 1, 1 << 24);
}

void events_block(DirectiveContext& ctx) {
    auto& c = ctx.conf<CoreConf>();
    if (c.events_seen) ctx.duplicate();
    c.events_seen = true;
    ConfSlots slots{&ctx.builder.generation().main_confs, nullptr, nullptr};
    ctx.builder.parse_block(ctx.node, kEventsContext, slots);
}

void set_worker_connections(DirectiveContext& ctx) {
    auto& c = ctx.conf<CoreConf>();
    if (c.worker_connections) ctx.duplicate();
    c.worker_connections = static_cast<uint32_t>(ctx.int_arg(0, 1, 1 << 20));
}

// nginx accepts these in events {} and they have no effect on Linux with epoll.
void ignore_directive(DirectiveContext&) {}

void check(GenerationBuilder& b) {
    auto& c = b.generation().main_confs[module_index(core_module)];
    auto& core = static_cast<CoreConf&>(*c);
    if (!core.events_seen) {
        const auto& gen = b.generation();
        std::string file = gen.files.empty() ? gen.conf_path : gen.files.front().path;
        throw conf::ConfigError(file, 1, "no \"events\" section in configuration");
    }
    if (!core.pid_path) core.pid_path = b.prefix_path(TOLLGATE_DEFAULT_PID_PATH);
    if (!core.error_log_path) core.error_log_path = b.prefix_path(TOLLGATE_DEFAULT_ERROR_LOG_PATH);
    if (!core.state_path) {
        std::string path = b.prefix_path(TOLLGATE_DEFAULT_STATE_PATH);
        while (path.size() > 1 && path.back() == '/') path.pop_back();
        core.state_path = path;
    }
}

constexpr Directive kDirectives[] = {
    {"worker_processes", kMainContext, 1, 1, false, ConfScope::Main, set_worker_processes},
    {"pid", kMainContext, 1, 1, false, ConfScope::Main, set_pid},
    {"user", kMainContext, 1, 2, false, ConfScope::Main, set_user},
    {"error_log", kMainContext, 1, 2, false, ConfScope::Main, set_error_log},
    {"daemon", kMainContext, 1, 1, false, ConfScope::Main, set_daemon},
    {"state_path", kMainContext, 1, 1, false, ConfScope::Main, set_state_path},
    {"worker_shutdown_timeout", kMainContext, 1, 1, false, ConfScope::Main,
     set_worker_shutdown_timeout},
    {"worker_rlimit_nofile", kMainContext, 1, 1, false, ConfScope::Main, set_worker_rlimit_nofile},
    {"events", kMainContext, 0, 0, true, ConfScope::Main, events_block},
    {"worker_connections", kEventsContext, 1, 1, false, ConfScope::Main, set_worker_connections},
    {"use", kEventsContext, 1, 1, false, ConfScope::Main, ignore_directive},
    {"multi_accept", kEventsContext, 1, 1, false, ConfScope::Main, ignore_directive},
    {"accept_mutex", kEventsContext, 1, 1, false, ConfScope::Main, ignore_directive},
};

}  // namespace

bool ensure_state_directory(const std::string& dir, const WorkerOwner& owner, std::string& error) {
    // Parents first (as mkdir -p); only the last component is given to the workers' user.
    bool created = false;
    for (size_t pos = 1; pos <= dir.size(); ++pos) {
        if (pos != dir.size() && dir[pos] != '/') continue;
        std::string part = dir.substr(0, pos);
        struct stat st;
        if (stat(part.c_str(), &st) == 0) {
            if (!S_ISDIR(st.st_mode)) {
                error = "\"" + part + "\" is not a directory";
                return false;
            }
            continue;
        }
        if (mkdir(part.c_str(), pos == dir.size() ? 0750 : 0755) != 0 && errno != EEXIST) {
            error = "mkdir(\"" + part + "\") failed (" + std::strerror(errno) + ")";
            return false;
        }
        created = pos == dir.size();
    }
    // A folder that existed is given away only while empty: a state_path mistakenly naming a
    // system folder (/var/lib) must not change its owner.
    if (!created) {
        DIR* d = opendir(dir.c_str());
        bool empty = true;
        if (d != nullptr) {
            while (dirent* e = readdir(d)) {
                std::string_view name = e->d_name;
                if (name != "." && name != "..") empty = false;
            }
            closedir(d);
        }
        if (!empty) return true;
    }
    if (owner.drop_privileges && chown(dir.c_str(), owner.uid, owner.gid) != 0) {
        error = "chown(\"" + dir + "\") failed (" + std::strerror(errno) + ")";
        return false;
    }
    return true;
}

const Module core_module = {
    .name = "core",
    .directives = kDirectives,
    .create_main = [] { return std::unique_ptr<ModuleConf>(new CoreConf()); },
    .check = check,
};

}  // namespace tollgate
