// The "body_route" module: content-based routing on top-level fields of a JSON request body.
//   json_route_field NAME ...;             server, location   (also http)
//   body_inspect_max_size SIZE;            http, server, location   (64k)
//   json_route_on_error default | 400;     http, server, location   (default)
// Phase: PreContent (after the access checks: the body of a refused request is never read). Where
// json_route_field is set, the body is read ahead up to body_inspect_max_size
// (core/http/body_preread.hpp; each wait bounded by client_body_timeout), scanned once without
// building a document (json_fields.hpp) and then forwarded byte for byte by the content handler:
// the bytes read ahead go first, the rest streams as usual. Variables: $json_NAME (the field's
// string, number or true/false; empty when absent, null, an object or an array) and
// $body_route_error ("" or malformed, not_object, too_large, missing). Typical use:
//   map $json_model $backend { gpt-4 openai; claude-3 anthropic; default agents; }
//   location /v1/ { json_route_field model; proxy_pass http://$backend; }
// On a malformed, too large or field-less body `default` leaves $json_NAME empty (the map's
// default applies); `400` answers 400 with the JSON error body (every listed field must then be
// present). A body over client_max_body_size gets 413 as anywhere. Chunked bodies work alike.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/generation.hpp"
#include "core/http/body_preread.hpp"
#include "core/http/request.hpp"
#include "modules/body_route/json_fields.hpp"

namespace tollgate {

extern const Module body_route_module;

namespace {

size_t body_route_index() {
    static const size_t index = module_index(body_route_module);
    return index;
}

struct BodyRouteLocConf : ModuleConf {
    std::optional<std::vector<std::string>> fields;
    std::optional<uint64_t> max_size;
    std::optional<bool> reject;  // json_route_on_error 400
};

// Per request (in the arena): what the inspection found.
struct BodyRouteCtx {
    const BodyRouteLocConf* conf = nullptr;
    std::string_view error;  // $body_route_error
    std::string_view* values = nullptr;
    bool* found = nullptr;
};

Verdict inspected(http::Request& r, const void* data, http::PrereadResult result) {
    const auto& c = *static_cast<const BodyRouteLocConf*>(data);
    const auto& fields = *c.fields;
    auto* ctx =
        static_cast<BodyRouteCtx*>(r.arena->allocate(sizeof(BodyRouteCtx), alignof(BodyRouteCtx)));
    new (ctx) BodyRouteCtx();
    ctx->conf = &c;
    ctx->values = static_cast<std::string_view*>(
        r.arena->allocate(sizeof(std::string_view) * fields.size(), alignof(std::string_view)));
    ctx->found = static_cast<bool*>(r.arena->allocate(fields.size(), alignof(bool)));
    for (size_t i = 0; i < fields.size(); ++i) {
        new (&ctx->values[i]) std::string_view();
        ctx->found[i] = false;
    }
    r.set_module_ctx(body_route_index(), ctx);
    bool reject = c.reject.value_or(false);
    if (result == http::PrereadResult::Error) {
        int status = r.body_error_status != 0 ? r.body_error_status : 400;
        return r.respond_error(status);
    }
    if (result == http::PrereadResult::TooLarge) {
        ctx->error = "too_large";
        return reject ? r.respond_error(400, "request body too large to inspect") : Verdict::Next;
    }
    std::string_view body;
    if (r.preread != nullptr && !r.preread->empty()) body = r.preread->pullup(r.preread->size());
    std::vector<std::optional<std::string>> out;
    body_route::JsonFields st = body_route::extract_fields(body, fields, out);
    if (st == body_route::JsonFields::Malformed) {
        ctx->error = "malformed";
        return reject ? r.respond_error(400, "request body is not valid JSON") : Verdict::Next;
    }
    if (st == body_route::JsonFields::NotObject) {
        ctx->error = "not_object";
        return reject ? r.respond_error(400, "request body is not a JSON object") : Verdict::Next;
    }
    bool missing = false;
    for (size_t i = 0; i < fields.size(); ++i) {
        if (out[i]) {
            ctx->values[i] = r.copy(*out[i]);
            ctx->found[i] = true;
        } else {
            missing = true;
        }
    }
    if (missing) {
        ctx->error = "missing";
        if (reject) return r.respond_error(400, "request body lacks a routing field");
    }
    return Verdict::Next;
}

Verdict body_route_handler(http::Request& r, const void* data) {
    if (r.module_ctx(body_route_index()) != nullptr) return Verdict::Next;  // inspected already
    const auto& c = *static_cast<const BodyRouteLocConf*>(data);
    return http::preread_body(r, static_cast<size_t>(c.max_size.value_or(64 * 1024)), inspected,
                              &c);
}

bool get_json_field(http::Request& r, std::string_view name, uintptr_t, std::string_view& out) {
    const auto* ctx = static_cast<const BodyRouteCtx*>(r.module_ctx(body_route_index()));
    if (ctx == nullptr) return false;
    const auto& fields = *ctx->conf->fields;
    for (size_t i = 0; i < fields.size(); ++i) {
        if (fields[i] == name) {
            if (!ctx->found[i]) return false;
            out = ctx->values[i];
            return true;
        }
    }
    return false;
}

bool get_error(http::Request& r, std::string_view, uintptr_t, std::string_view& out) {
    const auto* ctx = static_cast<const BodyRouteCtx*>(r.module_ctx(body_route_index()));
    if (ctx == nullptr) return false;
    out = ctx->error;
    return true;
}

void register_variables(VariableRegistry& reg) {
    reg.add_prefix("json_", get_json_field);
    reg.add("body_route_error", get_error);
}

void json_route_field(DirectiveContext& ctx) {
    auto& c = ctx.conf<BodyRouteLocConf>();
    if (c.fields) ctx.duplicate();
    std::vector<std::string> fields;
    for (size_t i = 0; i < ctx.nargs(); ++i) {
        const std::string& f = ctx.arg(i);
        if (f.empty() || f.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                             "0123456789_") != std::string::npos) {
            ctx.invalid_value(i, "a field name is letters, digits and \"_\" (it names $json_NAME)");
        }
        fields.push_back(f);
    }
    c.fields = std::move(fields);
}

void body_inspect_max_size(DirectiveContext& ctx) {
    auto& c = ctx.conf<BodyRouteLocConf>();
    if (c.max_size) ctx.duplicate();
    uint64_t size = ctx.size_arg(0);
    if (size == 0 || size > (16u << 20)) ctx.invalid_value(0, "must be between 1 and 16m");
    c.max_size = size;
}

void json_route_on_error(DirectiveContext& ctx) {
    auto& c = ctx.conf<BodyRouteLocConf>();
    if (c.reject) ctx.duplicate();
    if (ctx.arg(0) != "default" && ctx.arg(0) != "400") ctx.invalid_value(0);
    c.reject = ctx.arg(0) == "400";
}

void merge(const ModuleConf& p, ModuleConf& ch) {
    const auto& parent = static_cast<const BodyRouteLocConf&>(p);
    auto& child = static_cast<BodyRouteLocConf&>(ch);
    if (!child.fields) child.fields = parent.fields;
    if (!child.max_size) child.max_size = parent.max_size;
    if (!child.reject) child.reject = parent.reject;
}

void attach(LocationBuilder& lb) {
    const auto& c = lb.conf<BodyRouteLocConf>(body_route_index());
    if (c.fields && !c.fields->empty()) lb.add(Phase::PreContent, body_route_handler, &c);
}

constexpr uint32_t kHSL = kHttpContext | kServerContext | kLocationContext;

constexpr Directive kDirectives[] = {
    {"json_route_field", kHSL, 1, 16, false, ConfScope::Location, json_route_field},
    {"body_inspect_max_size", kHSL, 1, 1, false, ConfScope::Location, body_inspect_max_size},
    {"json_route_on_error", kHSL, 1, 1, false, ConfScope::Location, json_route_on_error},
};

}  // namespace

extern const Module body_route_module = {
    .name = "body_route",
    .directives = kDirectives,
    .create_location = [] { return std::unique_ptr<ModuleConf>(new BodyRouteLocConf()); },
    .merge_location = merge,
    .register_variables = register_variables,
    .attach_location = attach,
};

}  // namespace tollgate
