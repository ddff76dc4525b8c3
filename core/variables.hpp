// The variables registry ($remote_addr, $http_NAME, ...) and compiled values that use them.
// Modules register their variables before the config is read; a value such as
// "$scheme://$host$request_uri" is compiled once at load into literal and variable segments,
// then evaluated per request, with each plain variable computed at most once per request.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config/syntax.hpp"

namespace tollgate {
namespace http {
class Request;
}

// Computes a variable for a request. `suffix` is the part after a prefix variable's prefix
// ("user_agent" for $http_user_agent), empty for plain variables. Returns false when the
// variable is not found for this request (it then evaluates to the empty string). A value that
// does not live as long as the request must be copied into the request's arena.
using VariableGetter = bool (*)(http::Request& r, std::string_view suffix, uintptr_t data,
                                std::string_view& out);

struct VariableDef {
    std::string name;  // for prefix variables, the prefix including its '_' ("http_")
    bool prefix = false;
    bool cacheable = true;  // computed once per request, then reused
    VariableGetter get = nullptr;
    uintptr_t data = 0;
};

// A resolved variable reference: index into the registry, plus the suffix of a prefix variable.
struct VariableRef {
    uint32_t index = 0;
    std::string suffix;
};

class VariableRegistry {
  public:
    // Adds a variable; a later add of the same name replaces the getter (set/map define
    // user variables this way). Returns its index.
    uint32_t add(std::string name, VariableGetter get, uintptr_t data = 0, bool cacheable = true);
    uint32_t add_prefix(std::string prefix, VariableGetter get, uintptr_t data = 0);
    // Adds (or finds) a variable that modules set per request at runtime (auth_request_set):
    // empty until set_variable() gives it a value for a request; the value lives in the
    // request and survives internal redirects. Returns its index, or nullopt when `name` is
    // a variable of another kind (a built-in such as $uri cannot be set).
    std::optional<uint32_t> add_settable(const std::string& name);
    // Exact name first, then the longest matching prefix variable.
    std::optional<VariableRef> find(std::string_view name) const;
    const VariableDef& at(uint32_t index) const { return defs_[index]; }
    size_t size() const { return defs_.size(); }

  private:
    std::vector<VariableDef> defs_;
};

// Evaluates variable `ref` for request `r`, through the request's per-request cache.
// A variable that is not found evaluates to "".
std::string_view evaluate_variable(http::Request& r, const VariableRef& ref);
// As evaluate_variable, but tells "not found" (returns false) from an empty value.
bool lookup_variable(http::Request& r, const VariableRef& ref, std::string_view& out);

// Sets settable variable `index` (from add_settable) of `r` to `value`, which must live as long
// as the request (in its arena).
void set_variable(http::Request& r, uint32_t index, std::string_view value);

// A string with variables, compiled at load.
class ComplexValue {
  public:
    ComplexValue() = default;
    // Compiles `text`; throws conf::ConfigError at `where` for an unknown variable or a bad
    // "${" reference.
    static ComplexValue compile(std::string_view text, const VariableRegistry& registry,
                                const conf::Node& where);
    // The value for this request; allocated in the request's arena when not a plain literal.
    std::string_view evaluate(http::Request& r) const;
    bool is_literal() const {
        return segments_.size() <= 1 && (segments_.empty() || !segments_[0].variable);
    }
    const std::string& source() const { return source_; }

  private:
    struct Segment {
        bool variable = false;
        std::string literal;
        VariableRef ref;
    };
    std::vector<Segment> segments_;
    std::string source_;
};

}  // namespace tollgate
