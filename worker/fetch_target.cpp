// read_fetch_target (core/http/fetch.hpp): here rather than in core because it makes the TLS
// context, which worker/fetch_tls.cpp defines (core does not link OpenSSL).
#include "core/config/values.hpp"
#include "core/generation.hpp"
#include "core/http/fetch.hpp"
#include "core/module.hpp"

namespace tollgate::http {

void read_fetch_target(DirectiveContext& ctx, FetchTarget& out,
                       const std::function<bool(size_t)>& option) {
    out.url_text = ctx.arg(0);
    std::string error;
    if (!parse_fetch_url(ctx.arg(0), out.url, error)) ctx.invalid_value(0, error);
    bool verify = true;
    bool have_verify = false;
    std::string trusted;
    for (size_t i = 1; i < ctx.nargs(); ++i) {
        std::string_view a = ctx.arg(i);
        if (option && option(i)) continue;
        if (a.rfind("ssl_verify=", 0) == 0) {
            auto v = conf::parse_flag(a.substr(11));
            if (!v) ctx.invalid_value(i, "ssl_verify must be on or off");
            verify = *v;
            have_verify = true;
        } else if (a.rfind("ssl_trusted_certificate=", 0) == 0 && a.size() > 24) {
            trusted = ctx.builder.conf_dir_path(a.substr(24));
        } else {
            ctx.invalid_value(i);
        }
    }
    if (!out.url.https && (have_verify || !trusted.empty())) {
        ctx.fail("ssl_verify and ssl_trusted_certificate need an https URL");
    }
    if (out.url.https) {
        out.tls = FetchTlsContext::make(verify, verify ? trusted : std::string(), error);
        if (!out.tls) ctx.fail(error);
    }
    if (!resolve_fetch_host(out.url, out.addresses, error)) ctx.fail(error);
}

}  // namespace tollgate::http
