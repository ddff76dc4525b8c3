// The module interface: the only thing a module exports is one `const Module NAME_module`,
// plain data listed in the generated, ordered module list (modules/CMakeLists.txt).
// The core never names a module; it walks compiled_modules().
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "core/config/syntax.hpp"

namespace tollgate {

class EventLoop;
class GenerationBuilder;
class VariableRegistry;
class LocationBuilder;
struct ConfigGeneration;
namespace http {
class Request;
}

// Where a directive may appear (a bit mask).
enum Context : uint32_t {
    kMainContext = 1u << 0,
    kEventsContext = 1u << 1,
    kHttpContext = 1u << 2,
    kServerContext = 1u << 3,
    kLocationContext = 1u << 4,
    kUpstreamContext = 1u << 5,
};

// Which of its module's config objects a directive writes to.
enum class ConfScope : uint8_t { None, Main, Server, Location };  // None: writes no config object

// Base of every module config object. Built once in the master, then immutable.
struct ModuleConf {
    virtual ~ModuleConf() = default;
};

class DirectiveContext;
using DirectiveHandler = void (*)(DirectiveContext& ctx);

inline constexpr uint8_t kUnlimitedArgs = 255;

struct Directive {
    std::string_view name;
    uint32_t contexts;  // Context mask
    uint8_t min_args;
    uint8_t max_args;  // kUnlimitedArgs for no upper bound
    bool block;        // takes a { } block instead of ending with ;
    ConfScope scope;
    DirectiveHandler handler;
};

// What a phase handler tells the request runner.
enum class [[nodiscard]] Verdict : uint8_t{
    Next,     // this handler is done or does not apply; run the next one
    Respond,  // a response is set on the request; stop the phases and send it
    Suspend,  // waiting on I/O; the handler calls Request::resume() exactly once later
    Allow,    // an Access check that applied allowed the request: under `satisfy any` the
              // remaining Access checks are skipped; elsewhere (and under `satisfy all`) as Next
};

// The request phases, in order. Handlers are flattened per location at load.
// PreAccess runs the limits (limit_req, limit_conn) before Access (auth), as nginx. Access holds
// only access checks (they answer Allow, Next when they do not apply, or a 401/403), combined
// by `satisfy all|any` (core/http/phases.hpp); subrequests skip it, as nginx. PreContent runs
// what must run for every admitted request before the content handler (mirror, body_route).
enum class Phase : uint8_t {
    PostRead,
    Rewrite,
    PreAccess,
    Access,
    PreContent,
    Content,
    Log,
    Count
};
inline constexpr size_t kPhaseCount = static_cast<size_t>(Phase::Count);

using PhaseHandler = Verdict (*)(http::Request& r, const void* data);

// A header filter runs once per response, right before its head is serialized, when the final
// status is known (handler responses, errors, redirects, proxied and upgrade responses alike;
// not for 444, which sends nothing). It may add or change r.out_headers; it must not respond,
// suspend or end the request. Filters are flattened per location at load, in module order.
using HeaderFilter = void (*)(http::Request& r, const void* data);

// Who the workers of a generation run as, for Module::init_master.
struct WorkerOwner {
    bool drop_privileges = false;  // the master is root and workers switch to uid/gid
    uint32_t uid = 0;
    uint32_t gid = 0;
};

struct Module {
    std::string_view name;
    std::span<const Directive> directives;
    // Config object factories; nullptr where the module has no config at that scope.
    std::unique_ptr<ModuleConf> (*create_main)() = nullptr;
    std::unique_ptr<ModuleConf> (*create_server)() = nullptr;
    std::unique_ptr<ModuleConf> (*create_location)() = nullptr;
    // Fill the child's unset fields from the parent; runs once at load, top-down.
    void (*merge_server)(const ModuleConf& parent, ModuleConf& child) = nullptr;
    void (*merge_location)(const ModuleConf& parent, ModuleConf& child) = nullptr;
    // Before any directive is read: add the module's variables.
    void (*register_variables)(VariableRegistry& registry) = nullptr;
    // After parse and merge: checks that span modules. Throws conf::ConfigError.
    void (*check)(GenerationBuilder& builder) = nullptr;
    // Per location, after merge: add the module's phase handlers for that location.
    void (*attach_location)(LocationBuilder& location) = nullptr;
    // In each worker after fork (with the worker's loop, for timers), and before it exits.
    void (*init_worker)(const ConfigGeneration& generation, EventLoop& loop) = nullptr;
    void (*exit_worker)(const ConfigGeneration& generation) = nullptr;
    // In each worker on USR1, before the generation's open files are reopened (flush buffers).
    void (*before_reopen)(const ConfigGeneration& generation) = nullptr;
    // In the master (root when started as root), before a generation's workers are forked, at
    // start and on each reload: make what workers need but may not make themselves (state
    // folders), owned by `owner`. Never opens what workers must open after fork (LMDB).
    // Returns false with `error` to refuse the generation (start fails; a reload keeps the old).
    bool (*init_master)(const ConfigGeneration& generation, const WorkerOwner& owner,
                        std::string& error) = nullptr;
    // A subcommand of the binary, `tollgate COMMAND ARGS...` ("key"): main() runs it before any
    // config is read, with argv[0] = COMMAND, and exits with what it returns.
    std::string_view command;
    int (*run_command)(int argc, char** argv) = nullptr;
};

// The generated list, in module order.
std::span<const Module* const> compiled_modules();

// Position of `m` in compiled_modules(); the index of its config objects.
size_t module_index(const Module& m);

// Handed to a directive handler: the directive's syntax node and the config object it writes.
class DirectiveContext {
  public:
    DirectiveContext(const conf::Node& node, GenerationBuilder& builder, ModuleConf* conf,
                     uint32_t context)
        : node(node), builder(builder), context(context), conf_(conf) {}

    const conf::Node& node;
    GenerationBuilder& builder;

    template <class T>
    T& conf() {
        return static_cast<T&>(*conf_);
    }
    size_t nargs() const { return node.args.size(); }
    const std::string& arg(size_t i) const { return node.args.at(i).value; }

    // Throw "FILE:LINE: message" for this directive.
    [[noreturn]] void fail(const std::string& message) const { node.fail(message); }
    // Throw 'invalid value "ARG" in "NAME" directive' (with an optional reason).
    [[noreturn]] void invalid_value(size_t i, std::string_view reason = {}) const;
    // Throw '"NAME" directive is duplicate'.
    [[noreturn]] void duplicate() const;

    // Typed argument readers; they throw invalid_value on a bad argument.
    uint64_t size_arg(size_t i) const;
    uint64_t time_ms_arg(size_t i) const;
    bool flag_arg(size_t i) const;
    int64_t int_arg(size_t i, int64_t min = 0, int64_t max = INT64_MAX) const;
    // The arguments of a per-worker cache directive, "off | max=N [valid=TIME]" (auth_jwt_cache,
    // auth_introspect_cache): sets `max` (1 to 1000000; 0 for off) and, when given, `valid_s`
    // (1s to 1000h, in seconds).
    void lru_cache_args(size_t& max, int64_t& valid_s) const;

    // The context this directive appeared in (one Context bit).
    const uint32_t context;

  private:
    ModuleConf* conf_;
};

}  // namespace tollgate
