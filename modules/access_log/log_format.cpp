#include "modules/access_log/log_format.hpp"

namespace tollgate::access_log {

namespace {
bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

void add_literal(CompiledFormat& out, std::string_view text) {
    if (text.empty()) return;
    out.literal_size += text.size();
    if (!out.ops.empty() && !out.ops.back().variable) {
        out.ops.back().literal += text;
        return;
    }
    out.ops.push_back(FormatOp{false, std::string(text), {}});
}
}  // namespace

std::optional<Escape> parse_escape(std::string_view name) {
    if (name == "default") return Escape::Default;
    if (name == "json") return Escape::Json;
    if (name == "none") return Escape::None;
    return std::nullopt;
}

std::string compile_format(std::string_view text, const VariableRegistry& registry,
                           CompiledFormat& out) {
    size_t i = 0;
    while (i < text.size()) {
        size_t dollar = text.find('$', i);
        if (dollar == std::string_view::npos) dollar = text.size();
        add_literal(out, text.substr(i, dollar - i));
        if (dollar == text.size()) break;
        size_t start = dollar + 1;
        std::string_view name;
        if (start < text.size() && text[start] == '{') {
            size_t close = text.find('}', start);
            if (close == std::string_view::npos) {
                return "the closing bracket in \"" + std::string(text) + "\" is missing";
            }
            name = text.substr(start + 1, close - start - 1);
            i = close + 1;
        } else {
            size_t end = start;
            while (end < text.size() && is_name_char(text[end])) ++end;
            name = text.substr(start, end - start);
            i = end;
        }
        if (name.empty()) return "invalid variable name in \"" + std::string(text) + "\"";
        auto ref = registry.find(name);
        if (!ref) return "unknown \"" + std::string(name) + "\" variable";
        out.ops.push_back(FormatOp{true, {}, std::move(*ref)});
    }
    return {};
}

}  // namespace tollgate::access_log
