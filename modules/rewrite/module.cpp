// The "rewrite" module (for now: return).
//   return CODE [TEXT];  return CODE URL;  return URL;     server, location      phase: Rewrite
// CODE 301, 302, 303, 307 and 308 take a URL for Location (a relative one is made absolute from
// the request's Host, as nginx's absolute_redirect on); other codes take an optional body TEXT,
// sent with the location's default_type. 444 closes the connection without a response.
// TEXT and URL may contain variables. A server-level return answers before any location's.
#include <memory>
#include <optional>

#include "core/generation.hpp"
#include "core/http/http_core_module.hpp"
#include "core/http/request.hpp"

namespace tollgate {
namespace {

struct ReturnAction {
    int code = 0;
    bool has_text = false;
    ComplexValue text;
};

struct RewriteConf : ModuleConf {
    std::optional<ReturnAction> action;
};

size_t rewrite_index();

bool is_redirect(int code) {
    return code == 301 || code == 302 || code == 303 || code == 307 || code == 308;
}

void set_return(DirectiveContext& ctx) {
    auto& conf = ctx.conf<RewriteConf>();
    if (conf.action) ctx.duplicate();
    ReturnAction a;
    const std::string& first = ctx.arg(0);
    if (ctx.nargs() == 1 && (first.rfind("http://", 0) == 0 || first.rfind("https://", 0) == 0 ||
                             first.rfind("$scheme", 0) == 0)) {
        a.code = 302;
        a.has_text = true;
        a.text = ComplexValue::compile(first, ctx.builder.variables(), ctx.node);
    } else {
        a.code = static_cast<int>(ctx.int_arg(0, 0, 999));
        if (a.code > 599 && a.code != 999) ctx.invalid_value(0);
        if (ctx.nargs() == 2) {
            a.has_text = true;
            a.text = ComplexValue::compile(ctx.arg(1), ctx.builder.variables(), ctx.node);
        }
    }
    conf.action = std::move(a);
}

Verdict run_return(http::Request& r, const void* data) {
    const auto& a = *static_cast<const ReturnAction*>(data);
    if (a.code == 444) {
        r.status = 444;
        return Verdict::Respond;
    }
    if (is_redirect(a.code) && a.has_text) {
        std::string_view url = a.text.evaluate(r);
        if (!url.empty() && url.front() == '/') {
            std::pmr::string abs(r.arena);
            abs += r.conn.tls != nullptr ? "https://" : "http://";
            abs += r.head.host.empty() ? r.conn.server_addr : r.head.host;
            abs += url;
            return r.redirect(a.code, r.copy(abs));
        }
        return r.redirect(a.code, url);
    }
    if (!a.has_text) {
        if (a.code >= 400) return r.respond_error(a.code);
        return r.respond(a.code, {}, {});
    }
    const auto& core = r.loc_conf<http::HttpCoreLocConf>(http::http_core_index());
    std::string_view type = core.default_type ? std::string_view(*core.default_type) : "text/plain";
    return r.respond(a.code, type, a.text.evaluate(r));
}

void attach(LocationBuilder& lb) {
    size_t idx = rewrite_index();
    const auto& server_conf = lb.server().srv_conf<RewriteConf>(idx);
    if (server_conf.action) lb.add(Phase::Rewrite, run_return, &*server_conf.action);
    const auto& conf = lb.conf<RewriteConf>(idx);
    if (conf.action) lb.add(Phase::Rewrite, run_return, &*conf.action);
}

constexpr Directive kDirectives[] = {
    // In a server block the directive writes the server-scope config: it runs before locations.
    {"return", kServerContext, 1, 2, false, ConfScope::Server, set_return},
    {"return", kLocationContext, 1, 2, false, ConfScope::Location, set_return},
};

}  // namespace

extern const Module rewrite_module = {
    .name = "rewrite",
    .directives = kDirectives,
    .create_server = [] { return std::unique_ptr<ModuleConf>(new RewriteConf()); },
    .create_location = [] { return std::unique_ptr<ModuleConf>(new RewriteConf()); },
    .attach_location = attach,
};

namespace {
size_t rewrite_index() {
    static const size_t index = module_index(rewrite_module);
    return index;
}
}  // namespace

}  // namespace tollgate
