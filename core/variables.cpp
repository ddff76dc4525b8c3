#include "core/variables.hpp"

#include "core/http/request.hpp"

namespace tollgate {

uint32_t VariableRegistry::add(std::string name, VariableGetter get, uintptr_t data,
                               bool cacheable) {
    for (uint32_t i = 0; i < defs_.size(); ++i) {
        if (!defs_[i].prefix && defs_[i].name == name) {
            defs_[i].get = get;
            defs_[i].data = data;
            defs_[i].cacheable = cacheable;
            return i;
        }
    }
    defs_.push_back(VariableDef{std::move(name), false, cacheable, get, data});
    return static_cast<uint32_t>(defs_.size() - 1);
}

uint32_t VariableRegistry::add_prefix(std::string prefix, VariableGetter get, uintptr_t data) {
    defs_.push_back(VariableDef{std::move(prefix), true, false, get, data});
    return static_cast<uint32_t>(defs_.size() - 1);
}

namespace {
bool get_settable(http::Request& r, std::string_view, uintptr_t index, std::string_view& out) {
    if (r.set_values == nullptr || r.set_values[index].data() == nullptr) return false;
    out = r.set_values[index];
    return true;
}
}  // namespace

std::optional<uint32_t> VariableRegistry::add_settable(const std::string& name) {
    for (uint32_t i = 0; i < defs_.size(); ++i) {
        if (!defs_[i].prefix && defs_[i].name == name) {
            if (defs_[i].get != get_settable) return std::nullopt;
            return i;
        }
    }
    auto index = static_cast<uint32_t>(defs_.size());
    // Not cacheable: the getter reads the request's value, which may change while it runs.
    defs_.push_back(VariableDef{name, false, false, get_settable, index});
    return index;
}

void set_variable(http::Request& r, uint32_t index, std::string_view value) {
    if (r.set_values == nullptr) {
        size_t n = r.variables().size();
        void* p = r.arena->allocate(sizeof(std::string_view) * n, alignof(std::string_view));
        r.set_values = static_cast<std::string_view*>(p);
        for (size_t i = 0; i < n; ++i) new (&r.set_values[i]) std::string_view();
    }
    // A set value is "found" even when empty: point an empty one at static storage.
    r.set_values[index] = value.data() != nullptr ? value : std::string_view("", 0);
}

std::optional<VariableRef> VariableRegistry::find(std::string_view name) const {
    for (uint32_t i = 0; i < defs_.size(); ++i) {
        if (!defs_[i].prefix && defs_[i].name == name) return VariableRef{i, {}};
    }
    std::optional<VariableRef> best;
    size_t best_len = 0;
    for (uint32_t i = 0; i < defs_.size(); ++i) {
        const auto& d = defs_[i];
        if (d.prefix && name.size() > d.name.size() && name.substr(0, d.name.size()) == d.name &&
            d.name.size() > best_len) {
            best = VariableRef{i, std::string(name.substr(d.name.size()))};
            best_len = d.name.size();
        }
    }
    return best;
}

bool lookup_variable(http::Request& r, const VariableRef& ref, std::string_view& out) {
    const VariableDef& def = r.variables().at(ref.index);
    if (!def.cacheable) {
        out = {};
        if (def.get(r, ref.suffix, def.data, out)) return true;
        out = {};
        return false;
    }
    http::Request::CachedValue& slot = r.variable_cache()[ref.index];
    if (slot.state == 0) {
        slot.state = def.get(r, ref.suffix, def.data, slot.value) ? 1 : 2;
        if (slot.state == 2) slot.value = {};
    }
    out = slot.value;
    return slot.state == 1;
}

std::string_view evaluate_variable(http::Request& r, const VariableRef& ref) {
    std::string_view out;
    lookup_variable(r, ref, out);
    return out;
}

namespace {
bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}
}  // namespace

ComplexValue ComplexValue::compile(std::string_view text, const VariableRegistry& registry,
                                   const conf::Node& where) {
    ComplexValue v;
    v.source_ = std::string(text);
    std::string literal;
    size_t i = 0;
    while (i < text.size()) {
        if (text[i] != '$') {
            literal += text[i++];
            continue;
        }
        size_t start = i + 1;
        std::string_view name;
        if (start < text.size() && text[start] == '{') {
            size_t close = text.find('}', start);
            if (close == std::string_view::npos)
                where.fail("the closing bracket in \"" + std::string(text) + "\" is missing");
            name = text.substr(start + 1, close - start - 1);
            i = close + 1;
        } else {
            size_t end = start;
            while (end < text.size() && is_name_char(text[end])) ++end;
            name = text.substr(start, end - start);
            i = end;
        }
        if (name.empty()) where.fail("invalid variable name in \"" + std::string(text) + "\"");
        auto ref = registry.find(name);
        if (!ref) where.fail("unknown \"" + std::string(name) + "\" variable");
        if (!literal.empty()) {
            v.segments_.push_back(Segment{false, std::move(literal), {}});
            literal.clear();
        }
        v.segments_.push_back(Segment{true, {}, std::move(*ref)});
    }
    if (!literal.empty()) v.segments_.push_back(Segment{false, std::move(literal), {}});
    return v;
}

std::string_view ComplexValue::evaluate(http::Request& r) const {
    if (segments_.empty()) return {};
    if (segments_.size() == 1) {
        const Segment& s = segments_[0];
        return s.variable ? evaluate_variable(r, s.ref) : std::string_view(s.literal);
    }
    std::pmr::string out(r.arena);
    for (const Segment& s : segments_) {
        out += s.variable ? evaluate_variable(r, s.ref) : std::string_view(s.literal);
    }
    return r.copy(out);
}

}  // namespace tollgate
