// The "headers" module: nginx's add_header.
//   add_header NAME VALUE [always];                         http, server, location
// Adds a response header. Without `always` only to responses with status 200, 201, 204, 206,
// 301, 302, 303, 304, 307 or 308 (as nginx); with `always` to every response, errors included.
// VALUE may contain variables; a value that evaluates to "" adds nothing. As nginx, a level
// inherits its parent's add_header list only if it defines none of its own.
// Runs as a header filter (LocationBuilder::add_header_filter): after the final status is known.
#include <memory>
#include <vector>

#include "core/generation.hpp"
#include "core/http/http_token.hpp"
#include "core/http/request.hpp"

namespace tollgate {
namespace {

struct AddHeader {
    std::string name;
    ComplexValue value;
    bool always = false;
};

struct HeadersConf : ModuleConf {
    bool set = false;  // this level has add_header directives of its own
    std::vector<AddHeader> headers;
};

size_t headers_index();

bool valid_header_name(std::string_view name) {
    if (name.empty()) return false;
    for (char c : name) {
        if (!http::token::is_tchar(static_cast<unsigned char>(c))) return false;
    }
    return true;
}

void set_add_header(DirectiveContext& ctx) {
    auto& conf = ctx.conf<HeadersConf>();
    if (!valid_header_name(ctx.arg(0))) ctx.invalid_value(0, "not a valid header name");
    for (char c : ctx.arg(1)) {
        if (c == '\r' || c == '\n' || c == '\0') ctx.invalid_value(1, "CR, LF or NUL in value");
    }
    AddHeader h;
    h.name = ctx.arg(0);
    h.value = ComplexValue::compile(ctx.arg(1), ctx.builder.variables(), ctx.node);
    if (ctx.nargs() == 3) {
        if (ctx.arg(2) != "always") ctx.invalid_value(2);
        h.always = true;
    }
    conf.set = true;
    conf.headers.push_back(std::move(h));
}

bool status_gets_headers(int status) {
    switch (status) {
        case 200:
        case 201:
        case 204:
        case 206:
        case 301:
        case 302:
        case 303:
        case 304:
        case 307:
        case 308:
            return true;
        default:
            return false;
    }
}

void add_headers(http::Request& r, const void* data) {
    const auto& conf = *static_cast<const HeadersConf*>(data);
    bool listed = status_gets_headers(r.status);
    for (const auto& h : conf.headers) {
        if (!listed && !h.always) continue;
        std::string_view value = h.value.evaluate(r);
        if (value.empty()) continue;
        // A variable's value is not trusted to be a single header line.
        if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos) continue;
        r.add_header(h.name, value);
    }
}

void merge(const ModuleConf& p, ModuleConf& c) {
    const auto& parent = static_cast<const HeadersConf&>(p);
    auto& child = static_cast<HeadersConf&>(c);
    if (!child.set) child.headers = parent.headers;
}

void attach(LocationBuilder& lb) {
    const auto& conf = lb.conf<HeadersConf>(headers_index());
    if (!conf.headers.empty()) lb.add_header_filter(add_headers, &conf);
}

constexpr Directive kDirectives[] = {
    {"add_header", kHttpContext | kServerContext | kLocationContext, 2, 3, false,
     ConfScope::Location, set_add_header},
};

}  // namespace

extern const Module headers_module = {
    .name = "headers",
    .directives = kDirectives,
    .create_location = [] { return std::unique_ptr<ModuleConf>(new HeadersConf()); },
    .merge_location = merge,
    .attach_location = attach,
};

namespace {
size_t headers_index() {
    static const size_t index = module_index(headers_module);
    return index;
}
}  // namespace

}  // namespace tollgate
