// The "access_log" module: nginx's log_format and access_log.
//   log_format NAME [escape=default|json|none] STRING ...;      http                  (load)
//   access_log PATH [FORMAT [buffer=SIZE [flush=TIME]] [if=CONDITION]];
//   access_log off;                                     http, server, location      phase: Log
//
// log_format: the STRINGs are concatenated; variables in them are resolved at load (an unknown
// one is a config error). The predefined "combined" format is nginx's:
//   $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
//   "$http_referer" "$http_user_agent"
// $remote_user is registered here as a fallback that is never found (logged "-") unless another
// module (auth) registers it; copied nginx formats that use it keep working either way.
// Escaping applies to variable values only: default writes '"', '\' and bytes < 0x20 or >= 0x7f
// as \xHH; json uses JSON string escapes; none writes values as is. A variable that is not found
// is logged as "-" (default, none) or nothing (json).
//
// access_log: several per level; a level with any access_log (or "off") replaces the inherited
// list; "off" disables logging at that level. PATH is relative to the prefix; the file is opened
// in the master at load (OpenFiles) and reopened on USR1. FORMAT defaults to "combined". When no
// level of a location has access_log, it logs to logs/access.log in "combined" (as nginx).
//   buffer=SIZE   (1..16m) lines are collected per worker and per file and written when the
//                 buffer would overflow, when the flush timer fires, before the worker exits,
//                 and on USR1 before the files are reopened (so they land in the old file).
//                 The buffer belongs to the file: every access_log to that file shares it, and
//                 two buffered access_logs to one file must agree on buffer= and flush=.
//   flush=TIME    the longest time a line waits in the buffer (needs buffer=): a timer on the
//                 worker's event loop, started when a line enters the empty buffer.
//   if=CONDITION  the request is not logged when CONDITION evaluates to "" or "0".
// Unbuffered lines go out with one write() each (O_APPEND keeps them whole across workers).
// The line is formatted in the request's arena; no heap allocation per request.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "core/config/error.hpp"
#include "core/config/values.hpp"
#include "core/event_loop.hpp"
#include "core/generation.hpp"
#include "core/http/request.hpp"
#include "core/log.hpp"
#include "modules/access_log/log_buffer.hpp"
#include "modules/access_log/log_format.hpp"

namespace tollgate {
namespace {

using access_log::CompiledFormat;
using access_log::Escape;
using access_log::LineBuffer;

constexpr std::string_view kCombined =
    "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent "
    "\"$http_referer\" \"$http_user_agent\"";
constexpr uint64_t kMaxBufferSize = 16 * 1024 * 1024;

// One file some access_log writes to, with the buffering all its access_logs share.
struct FileSpec {
    std::shared_ptr<OpenFile> file;
    size_t buffer = 0;      // 0: unbuffered
    uint64_t flush_ms = 0;  // 0: no flush timer
};

struct LogTarget {
    size_t file = 0;  // index into AccessLogMainConf::files
    OpenFile* open_file = nullptr;
    const CompiledFormat* format = nullptr;
    std::optional<ComplexValue> condition;
};

struct AccessLogMainConf : ModuleConf {
    std::vector<std::unique_ptr<CompiledFormat>> formats;  // stable addresses
    std::vector<FileSpec> files;
    std::vector<LogTarget> default_logs;  // logs/access.log combined, made on first need
};

struct AccessLogLocConf : ModuleConf {
    bool set = false;  // some access_log at this level (or inherited from one)
    bool off = false;
    std::vector<LogTarget> logs;
};

size_t access_log_index();

AccessLogMainConf& main_conf(GenerationBuilder& b) {
    return static_cast<AccessLogMainConf&>(*b.generation().main_confs[access_log_index()]);
}

// The format called `name`, compiling the predefined "combined" on first use.
const CompiledFormat* find_format(AccessLogMainConf& mc, std::string_view name,
                                  const VariableRegistry& registry) {
    for (const auto& f : mc.formats) {
        if (f->name == name) return f.get();
    }
    if (name != "combined") return nullptr;
    auto f = std::make_unique<CompiledFormat>();
    f->name = "combined";
    std::string error = access_log::compile_format(kCombined, registry, *f);
    if (!error.empty()) throw conf::ConfigError("", 0, "combined log format: " + error);
    mc.formats.push_back(std::move(f));
    return mc.formats.back().get();
}

// ---- directives --------------------------------------------------------------------------------

void set_log_format(DirectiveContext& ctx) {
    auto& mc = ctx.conf<AccessLogMainConf>();
    const std::string& name = ctx.arg(0);
    if (find_format(mc, name, ctx.builder.variables()) != nullptr) {
        ctx.fail("duplicate \"log_format\" name \"" + name + "\"");
    }
    auto f = std::make_unique<CompiledFormat>();
    f->name = name;
    size_t i = 1;
    if (ctx.arg(1).rfind("escape=", 0) == 0) {
        std::string_view value = std::string_view(ctx.arg(1)).substr(7);
        auto e = access_log::parse_escape(value);
        if (!e) ctx.fail("unknown log format escaping \"" + std::string(value) + "\"");
        f->escape = *e;
        i = 2;
    }
    if (i >= ctx.nargs()) ctx.fail("invalid number of arguments in \"log_format\" directive");
    for (; i < ctx.nargs(); ++i) {
        std::string error = access_log::compile_format(ctx.arg(i), ctx.builder.variables(), *f);
        if (!error.empty()) ctx.fail(error);
    }
    mc.formats.push_back(std::move(f));
}

// Registers `file` in the main conf's file list with its buffering; returns its index.
size_t add_file(DirectiveContext& ctx, AccessLogMainConf& mc, std::shared_ptr<OpenFile> file,
                size_t buffer, uint64_t flush_ms) {
    for (size_t i = 0; i < mc.files.size(); ++i) {
        FileSpec& spec = mc.files[i];
        if (spec.file != file) continue;
        if (buffer == 0) return i;
        if (spec.buffer != 0 && (spec.buffer != buffer || spec.flush_ms != flush_ms)) {
            ctx.fail("access_log \"" + ctx.arg(0) +
                     "\" already defined with conflicting parameters");
        }
        spec.buffer = buffer;
        spec.flush_ms = flush_ms;
        return i;
    }
    mc.files.push_back(FileSpec{std::move(file), buffer, flush_ms});
    return mc.files.size() - 1;
}

void set_access_log(DirectiveContext& ctx) {
    auto& lc = ctx.conf<AccessLogLocConf>();
    lc.set = true;
    const std::string& path = ctx.arg(0);
    if (path == "off") {
        if (ctx.nargs() > 1) ctx.fail("invalid parameter \"" + ctx.arg(1) + "\"");
        lc.off = true;
        return;
    }
    if (path.rfind("syslog:", 0) == 0) ctx.fail("syslog access logs are not supported");
    if (path.find('$') != std::string::npos) {
        ctx.fail("variables in access_log paths are not supported");
    }
    AccessLogMainConf& mc = main_conf(ctx.builder);
    std::string_view format_name = ctx.nargs() >= 2 ? std::string_view(ctx.arg(1)) : "combined";
    const CompiledFormat* format = find_format(mc, format_name, ctx.builder.variables());
    if (format == nullptr) ctx.fail("unknown log format \"" + std::string(format_name) + "\"");

    uint64_t buffer = 0;
    uint64_t flush_ms = 0;
    std::optional<ComplexValue> condition;
    for (size_t i = 2; i < ctx.nargs(); ++i) {
        std::string_view a = ctx.arg(i);
        if (a.rfind("buffer=", 0) == 0) {
            auto v = conf::parse_size(a.substr(7));
            if (!v || *v == 0 || *v > kMaxBufferSize) {
                ctx.fail("invalid buffer size \"" + std::string(a.substr(7)) + "\"");
            }
            buffer = *v;
        } else if (a.rfind("flush=", 0) == 0) {
            auto v = conf::parse_time_ms(a.substr(6));
            if (!v || *v == 0) ctx.fail("invalid flush time \"" + std::string(a.substr(6)) + "\"");
            flush_ms = *v;
        } else if (a.rfind("if=", 0) == 0) {
            condition = ComplexValue::compile(a.substr(3), ctx.builder.variables(), ctx.node);
        } else if (a == "gzip" || a.rfind("gzip=", 0) == 0) {
            ctx.fail("gzip access logs are not supported");
        } else {
            ctx.fail("invalid parameter \"" + std::string(a) + "\"");
        }
    }
    if (flush_ms != 0 && buffer == 0) {
        ctx.fail("no buffer is defined for access_log \"" + path + "\"");
    }
    std::shared_ptr<OpenFile> file;
    try {
        file = ctx.builder.generation().open_files.get(ctx.builder.prefix_path(path));
    } catch (const std::runtime_error& e) {
        ctx.fail(e.what());
    }
    OpenFile* raw = file.get();
    size_t index = add_file(ctx, mc, std::move(file), buffer, flush_ms);
    lc.logs.push_back(LogTarget{index, raw, format, std::move(condition)});
}

void merge_location(const ModuleConf& parent_base, ModuleConf& child_base) {
    const auto& parent = static_cast<const AccessLogLocConf&>(parent_base);
    auto& child = static_cast<AccessLogLocConf&>(child_base);
    if (child.set) return;
    child.set = parent.set;
    child.off = parent.off;
    child.logs = parent.logs;
}

// ---- per-worker buffers ------------------------------------------------------------------------

void report_write_error(const OpenFile& file, int err) {
    // nginx rate-limits these too: a full disk would otherwise flood the error log.
    static int64_t last = 0;
    int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count();
    if (now - last < 1000) return;
    last = now;
    LOG_ERROR("write() to \"%s\" failed (%s)", file.path().c_str(), std::strerror(err));
}

// This worker's buffers, by file index (null for unbuffered files). A raw pointer, freed in
// exit_worker: the buffers' timers must not outlive the worker's event_base.
std::vector<std::unique_ptr<LineBuffer>>* g_buffers = nullptr;

void init_worker(const ConfigGeneration& generation, EventLoop& loop) {
    const auto& mc = generation.main_conf<AccessLogMainConf>(access_log_index());
    bool any = std::any_of(mc.files.begin(), mc.files.end(),
                           [](const FileSpec& f) { return f.buffer != 0; });
    if (!any) return;
    auto buffers = std::make_unique<std::vector<std::unique_ptr<LineBuffer>>>(mc.files.size());
    for (size_t i = 0; i < mc.files.size(); ++i) {
        const FileSpec& spec = mc.files[i];
        if (spec.buffer == 0) continue;
        (*buffers)[i] = std::make_unique<LineBuffer>(*spec.file, spec.buffer, spec.flush_ms, loop,
                                                     report_write_error);
    }
    g_buffers = buffers.release();
}

void flush_all() {
    if (g_buffers == nullptr) return;
    for (auto& b : *g_buffers) {
        if (b) b->flush();
    }
}

// USR1: the files are about to be reopened; what is pending belongs to the old ones.
void before_reopen(const ConfigGeneration&) {
    flush_all();
}

void exit_worker(const ConfigGeneration&) {
    flush_all();
    delete g_buffers;  // and with them their timers
    g_buffers = nullptr;
}

// ---- the log handler ---------------------------------------------------------------------------

void format_line(http::Request& r, const CompiledFormat& f, std::pmr::string& line) {
    line.reserve(f.literal_size + 48 * f.ops.size() + 1);
    for (const auto& op : f.ops) {
        if (!op.variable) {
            line += op.literal;
            continue;
        }
        std::string_view v;
        if (lookup_variable(r, op.ref, v)) {
            access_log::append_escaped(line, v, f.escape);
        } else {
            line += access_log::not_found_text(f.escape);
        }
    }
    line += '\n';
}

void write_line(const LogTarget& t, std::string_view line) {
    LineBuffer* b =
        g_buffers != nullptr && t.file < g_buffers->size() ? (*g_buffers)[t.file].get() : nullptr;
    if (b != nullptr) {
        b->add(line);
    } else if (!t.open_file->write(line.data(), line.size())) {
        report_write_error(*t.open_file, errno);
    }
}

Verdict log_request(http::Request& r, const void* data) {
    const auto& logs = *static_cast<const std::vector<LogTarget>*>(data);
    const CompiledFormat* formatted = nullptr;
    std::pmr::string line(r.arena);
    for (const LogTarget& t : logs) {
        if (t.condition) {
            std::string_view v = t.condition->evaluate(r);
            if (v.empty() || v == "0") continue;
        }
        if (t.format != formatted) {
            line.clear();
            format_line(r, *t.format, line);
            formatted = t.format;
        }
        write_line(t, line);
    }
    return Verdict::Next;
}

void attach(LocationBuilder& lb) {
    const auto& conf = lb.conf<AccessLogLocConf>(access_log_index());
    if (conf.set) {
        if (!conf.off && !conf.logs.empty()) lb.add(Phase::Log, log_request, &conf.logs);
        return;
    }
    AccessLogMainConf& mc = main_conf(lb.builder());
    if (mc.default_logs.empty()) {
        const CompiledFormat* combined = find_format(mc, "combined", lb.builder().variables());
        std::shared_ptr<OpenFile> file;
        try {
            file = lb.builder().generation().open_files.get(
                lb.builder().prefix_path("logs/access.log"));
        } catch (const std::runtime_error& e) {
            throw conf::ConfigError(lb.location().file, lb.location().line, e.what());
        }
        OpenFile* raw = file.get();
        size_t index = mc.files.size();
        for (size_t i = 0; i < mc.files.size(); ++i) {
            if (mc.files[i].file == file) index = i;
        }
        if (index == mc.files.size()) mc.files.push_back(FileSpec{std::move(file), 0, 0});
        mc.default_logs.push_back(LogTarget{index, raw, combined, std::nullopt});
    }
    lb.add(Phase::Log, log_request, &mc.default_logs);
}

// $remote_user until an auth module defines it: never found, so logged as "-".
bool v_remote_user(http::Request&, std::string_view, uintptr_t, std::string_view&) {
    return false;
}

void register_variables(VariableRegistry& registry) {
    auto existing = registry.find("remote_user");
    if (!existing || !existing->suffix.empty()) registry.add("remote_user", v_remote_user);
}

constexpr Directive kDirectives[] = {
    {"log_format", kHttpContext, 2, kUnlimitedArgs, false, ConfScope::Main, set_log_format},
    {"access_log", kHttpContext | kServerContext | kLocationContext, 1, kUnlimitedArgs, false,
     ConfScope::Location, set_access_log},
};

}  // namespace

extern const Module access_log_module = {
    .name = "access_log",
    .directives = kDirectives,
    .create_main = [] { return std::unique_ptr<ModuleConf>(new AccessLogMainConf()); },
    .create_location = [] { return std::unique_ptr<ModuleConf>(new AccessLogLocConf()); },
    .merge_location = merge_location,
    .register_variables = register_variables,
    .attach_location = attach,
    .init_worker = init_worker,
    .exit_worker = exit_worker,
    .before_reopen = before_reopen,
};

namespace {
size_t access_log_index() {
    static const size_t index = module_index(access_log_module);
    return index;
}
}  // namespace

}  // namespace tollgate
