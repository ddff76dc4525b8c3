#include "core/json_claims.hpp"

namespace tollgate::claims {

const Json* find_claim(const Json& obj, std::string_view path) {
    if (!obj.is_object()) return nullptr;
    // The whole name first ("a.b" may be a member of its own).
    auto it = obj.find(path);
    if (it != obj.end()) return &*it;
    const Json* cur = &obj;
    while (!path.empty()) {
        size_t dot = path.find('.');
        std::string_view part = path.substr(0, dot);
        if (!cur->is_object()) return nullptr;
        auto p = cur->find(part);
        if (p == cur->end()) return nullptr;
        cur = &*p;
        if (dot == std::string_view::npos) return cur;
        path.remove_prefix(dot + 1);
    }
    return nullptr;
}

namespace {
void render_scalar(const Json& v, std::string& out) {
    if (v.is_string()) {
        out += v.get_ref<const std::string&>();
    } else {
        out += v.dump(-1, ' ', false, Json::error_handler_t::replace);
    }
}
}  // namespace

bool contains(const Json& c, std::string_view value) {
    std::string s;
    if (c.is_string()) {
        std::string_view text = c.get_ref<const std::string&>();
        while (!text.empty()) {  // a space-separated list (RFC 8693 "scope")
            size_t sp = text.find(' ');
            if (text.substr(0, sp) == value) return true;
            if (sp == std::string_view::npos) break;
            text.remove_prefix(sp + 1);
        }
        return false;
    }
    if (c.is_array()) {
        for (const Json& e : c) {
            if (e.is_string()) {
                if (e.get_ref<const std::string&>() == value) return true;
                continue;
            }
            if (e.is_array() || e.is_object()) continue;
            s.clear();
            render_scalar(e, s);
            if (s == value) return true;
        }
        return false;
    }
    if (c.is_object() || c.is_null()) return false;
    render_scalar(c, s);
    return s == value;
}

void render_claim(const Json& v, std::string& out) {
    if (v.is_array()) {
        bool first = true;
        for (const Json& e : v) {
            if (!first) out += ',';
            first = false;
            render_scalar(e, out);
        }
        return;
    }
    render_scalar(v, out);
}

}  // namespace tollgate::claims
