// A configuration generation: everything one parse of the config produces, built whole in the
// master and immutable afterwards. Workers inherit it through fork; a reload builds a new one.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/config/syntax.hpp"
#include "core/http/http_config.hpp"
#include "core/module.hpp"
#include "core/open_file.hpp"
#include "core/shared_zone.hpp"
#include "core/variables.hpp"

namespace tollgate {

struct ConfigGeneration {
    std::string prefix;     // ends with '/'
    std::string conf_path;  // absolute
    std::vector<conf::SourceFile> files;
    std::vector<std::unique_ptr<ModuleConf>> main_confs;  // by module index; null where none
    VariableRegistry variables;
    std::unique_ptr<http::HttpConfig> http;
    OpenFiles open_files;  // access logs and the like; the master reopens them on USR1
    // Shared-memory zones declared by modules (limit_req_zone ...), mapped before fork.
    std::vector<std::shared_ptr<SharedZone>> zones;

    template <class T>
    const T& main_conf(size_t module_index) const {
        return static_cast<const T&>(*main_confs[module_index]);
    }
};

struct BuildOptions {
    std::string prefix;             // -p, default TOLLGATE_DEFAULT_PREFIX
    std::string conf_path;          // -c, relative to the prefix when not absolute
    std::string global_directives;  // -g
    bool running_as_root = true;    // default listen port 80 as root, 8000 otherwise (nginx)
};

// The config objects a block's directives write to, per scope.
struct ConfSlots {
    std::vector<std::unique_ptr<ModuleConf>>* main = nullptr;
    std::vector<std::unique_ptr<ModuleConf>>* server = nullptr;
    std::vector<std::unique_ptr<ModuleConf>>* location = nullptr;
};

class GenerationBuilder {
  public:
    // Parses, merges and checks the whole configuration. Throws conf::ConfigError.
    static std::shared_ptr<const ConfigGeneration> build(const BuildOptions& options);
    // The absolute prefix (with a trailing '/') and config file path that `options` name.
    static std::string resolve_prefix(const BuildOptions& options);
    static std::string resolve_conf_path(const BuildOptions& options);

    // Runs every directive of `block` in `context` against `slots`.
    void parse_block(const conf::Node& block, uint32_t context, const ConfSlots& slots);
    // Creates one config object per module for a scope (null where a module has none).
    std::vector<std::unique_ptr<ModuleConf>> create_confs(ConfScope scope) const;

    // A path relative to the prefix (log files, root), made absolute.
    std::string prefix_path(std::string_view path) const;
    // A path relative to the main config file's folder (include, mime.types), made absolute.
    std::string conf_dir_path(std::string_view path) const;

    ConfigGeneration& generation() { return *gen_; }
    VariableRegistry& variables() { return gen_->variables; }
    const BuildOptions& options() const { return options_; }
    // The http tree under construction (created by the http block).
    http::HttpConfig* http() { return gen_->http.get(); }

    // Declares the shared zone `name` of `size` bytes for a module's use `kind` ("limit_req").
    // The same name, kind, size and `layout` (the module's tag for what its bytes mean) as a
    // zone of the running generation reuses that zone (SharedZone::reused()); anything else
    // maps a fresh one. Within one generation a name is one zone: declared again with another
    // kind it is an error at `where` ('zone "one" is already declared for limit_conn'), with
    // another size or layout too. Throws conf::ConfigError.
    std::shared_ptr<SharedZone> shared_zone(const conf::Node& where, std::string_view name,
                                            size_t size, std::string_view kind,
                                            uint64_t layout = 0);
    // A zone of this generation by name, or nullptr.
    std::shared_ptr<SharedZone> find_shared_zone(std::string_view name) const;

  private:
    GenerationBuilder(const BuildOptions& options);
    struct Entry {
        size_t module;
        const Directive* directive;
    };
    BuildOptions options_;
    std::shared_ptr<ConfigGeneration> gen_;
    std::unordered_map<std::string_view, std::vector<Entry>>
        directives_;  // same name, other contexts
    std::string conf_dir_;
};

// Handed to Module::attach_location for one location.
class LocationBuilder {
  public:
    LocationBuilder(http::Location& location, const http::Server& server, GenerationBuilder& b)
        : location_(location), server_(server), builder_(b) {}
    void add(Phase phase, PhaseHandler handler, const void* data) {
        location_.phases[static_cast<size_t>(phase)].push_back({handler, data});
    }
    // A header filter for every response this location sends (see HeaderFilter).
    void add_header_filter(HeaderFilter filter, const void* data) {
        location_.header_filters.push_back({filter, data});
    }
    template <class T>
    const T& conf(size_t module_index) const {
        return static_cast<const T&>(*location_.confs[module_index]);
    }
    const http::Location& location() const { return location_; }
    const http::Server& server() const { return server_; }
    GenerationBuilder& builder() { return builder_; }

  private:
    http::Location& location_;
    const http::Server& server_;
    GenerationBuilder& builder_;
};

}  // namespace tollgate
