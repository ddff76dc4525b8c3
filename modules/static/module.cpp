// The "static" module: files from disk, as nginx's static, index and try_files.
//   root PATH;                   http, server, location  (html)        phase: Content
//   alias PATH;                  location                              phase: Content
//   index FILE ...;              http, server, location  (index.html)  phase: Content
//   try_files FILE ... URI;      server, location                      phase: Content, first
//   try_files FILE ... =CODE;
// Variables: $document_root, $request_filename.
//
// root: the file is root + URI. A relative PATH is relative to the prefix (-p); a trailing '/' is
// dropped. PATH may contain variables (a relative result is then made absolute per request).
// alias: the file is PATH + the URI without the location's prefix. Not with root in one location
// ("alias" directive is duplicate, "root" directive was specified earlier), not in a named or a
// regex location (nginx needs regex captures there; those are not supported). Neither root nor
// alias is set: root html, inherited from the enclosing block.
// index: for a URI ending in '/', the first FILE that exists in that directory gets an internal
// redirect to URI + FILE (the query string kept); the last FILE may be absolute ("/index.html":
// redirect there unchecked). None exists: 403 when the directory exists, 404 otherwise. Several
// index directives in one block append, the list is inherited as a whole.
// try_files: runs before the file is served. Each FILE (variables allowed) is checked relative to
// root/alias; a FILE ending in '/' must be a directory, any other must not be. The first one that
// exists becomes the request's URI and is served by this module (a directory: index, or a 301 to
// the name with '/'). None exists: "=CODE" answers CODE, a URI ("/x?args" or "@name") gets an
// internal redirect (the query string is the one given in URI, none when it has none). As nginx,
// try_files is not inherited: a server-level one applies when no location matches.
// Serving: GET and HEAD (POST to a file: 405 like nginx; other methods: 405, with "Allow: GET,
// HEAD"). A directory without a trailing '/' gets a 301 to URI/ (query kept, absolute URL); not
// found 404, permission denied 403, any other error 500 (details in the error log only). The
// response carries Content-Type (types / default_type), Content-Length, Last-Modified,
// ETag "mtime-size" (hex, as nginx) and Accept-Ranges: bytes; the worker sends it with sendfile.
// Conditional requests (nginx's not_modified filter, if_modified_since exact): If-Unmodified-Since
// and If-Match may answer 412; If-Modified-Since equal to the mtime and/or a matching
// If-None-Match answer 304. Ranges (nginx's range filter, single range only): "Range: bytes=a-b",
// "a-", "-n" answer 206 with Content-Range, honouring If-Range; an unsatisfiable range 416;
// several ranges get the whole file (200). While an error_page is served with a status other
// than 200, conditionals and ranges are off and no validators are sent.
#include <fcntl.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/generation.hpp"
#include "core/http/http_config.hpp"
#include "core/http/http_core_module.hpp"
#include "core/http/request.hpp"
#include "core/log.hpp"

namespace tollgate {
namespace {

// A root or alias value: an absolute literal, or a value with variables.
struct PathValue {
    std::string literal;
    ComplexValue value;
    bool variables = false;
    std::string prefix;  // makes a relative value from variables absolute
};

struct IndexEntry {
    std::string literal;
    ComplexValue value;
    bool variables = false;
};

struct TryEntry {
    ComplexValue name;
    bool test_dir = false;  // written with a trailing '/': must be a directory
};

struct TryFiles {
    std::vector<TryEntry> files;
    ComplexValue fallback;  // a URI or @name, when code is 0
    int code = 0;           // "=CODE"
};

struct StaticLocConf : ModuleConf {
    std::optional<PathValue> root;  // root, or the alias when `alias`
    bool alias = false;
    std::string location;  // the location prefix an alias replaces
    std::optional<std::vector<IndexEntry>> index;
    std::optional<TryFiles> try_files;
};

size_t static_index();

// ---- configuration ---------------------------------------------------------------------------

bool has_variables(std::string_view s) {
    return s.find('$') != std::string_view::npos;
}

bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// $document_root and $request_filename are computed from root/alias: they cannot be in one.
void reject_self_reference(DirectiveContext& ctx, std::string_view value) {
    for (size_t at = value.find('$'); at != std::string_view::npos; at = value.find('$', at + 1)) {
        std::string_view rest = value.substr(at + 1);
        bool braced = !rest.empty() && rest.front() == '{';
        if (braced) rest.remove_prefix(1);
        size_t n = 0;
        while (n < rest.size() && is_name_char(rest[n])) ++n;
        std::string_view name = rest.substr(0, n);
        if (name == "document_root" || name == "request_filename") {
            ctx.fail("the \"$" + std::string(name) + "\" variable cannot be used in \"" +
                     ctx.node.name + "\" directive");
        }
    }
}

PathValue compile_path(DirectiveContext& ctx, bool alias) {
    PathValue v;
    const std::string& arg = ctx.arg(0);
    if (arg.empty()) ctx.invalid_value(0);
    if (has_variables(arg)) {
        reject_self_reference(ctx, arg);
        v.value = ComplexValue::compile(arg, ctx.builder.variables(), ctx.node);
        v.variables = true;
        v.prefix = ctx.builder.generation().prefix;
        return v;
    }
    v.literal = ctx.builder.prefix_path(arg);
    if (!alias && !v.literal.empty() && v.literal.back() == '/') v.literal.pop_back();
    return v;
}

void check_not_set(DirectiveContext& ctx, const StaticLocConf& c, bool alias) {
    if (!c.root) return;
    if (c.alias == alias) ctx.duplicate();
    ctx.fail("\"" + ctx.node.name + "\" directive is duplicate, \"" + (c.alias ? "alias" : "root") +
             "\" directive was specified earlier");
}

void set_root(DirectiveContext& ctx) {
    auto& c = ctx.conf<StaticLocConf>();
    check_not_set(ctx, c, false);
    c.root = compile_path(ctx, false);
}

void set_alias(DirectiveContext& ctx) {
    auto& c = ctx.conf<StaticLocConf>();
    check_not_set(ctx, c, true);
    // The location being parsed is the last one of the last server (no nested locations).
    const http::Location& loc = *ctx.builder.http()->servers.back()->locations.back();
    if (loc.kind == http::Location::Kind::Named) {
        ctx.fail("\"alias\" directive cannot be used inside the named location");
    }
    if (loc.kind == http::Location::Kind::Regex) {
        ctx.fail(
            "\"alias\" directive cannot be used inside a regex location (captures are not "
            "supported), use \"root\"");
    }
    c.root = compile_path(ctx, true);
    c.alias = true;
    c.location = loc.pattern;
}

void set_index(DirectiveContext& ctx) {
    auto& c = ctx.conf<StaticLocConf>();
    if (!c.index) c.index.emplace();
    for (size_t i = 0; i < ctx.nargs(); ++i) {
        const std::string& name = ctx.arg(i);
        if (name.empty()) {
            ctx.fail("index \"\" in \"index\" directive is invalid");
        }
        if (name.front() == '/' && i != ctx.nargs() - 1) {
            ctx.fail("only the last index in \"index\" directive should be absolute");
        }
        IndexEntry e;
        if (has_variables(name)) {
            e.value = ComplexValue::compile(name, ctx.builder.variables(), ctx.node);
            e.variables = true;
        } else {
            e.literal = name;
        }
        c.index->push_back(std::move(e));
    }
}

void set_try_files(DirectiveContext& ctx) {
    auto& c = ctx.conf<StaticLocConf>();
    if (c.try_files) ctx.duplicate();
    TryFiles tf;
    size_t last = ctx.nargs() - 1;
    for (size_t i = 0; i < last; ++i) {
        std::string name = ctx.arg(i);
        if (name.empty()) ctx.invalid_value(i);
        TryEntry e;
        if (name.size() > 1 && name.back() == '/') {  // nginx: "$uri/" tests "$uri" for a dir
            e.test_dir = true;
            name.pop_back();
        } else if (name == "/") {
            e.test_dir = true;
        }
        e.name = ComplexValue::compile(name, ctx.builder.variables(), ctx.node);
        tf.files.push_back(std::move(e));
    }
    const std::string& fallback = ctx.arg(last);
    if (!fallback.empty() && fallback.front() == '=') {
        int code = -1;
        if (fallback.size() > 1 && fallback.size() <= 4 &&
            fallback.find_first_not_of("0123456789", 1) == std::string::npos) {
            code = std::stoi(fallback.substr(1));
        }
        if (code < 100 || code > 999) ctx.fail("invalid code \"" + fallback + "\"");
        tf.code = code;
    } else {
        if (fallback.empty()) ctx.invalid_value(last);
        tf.fallback = ComplexValue::compile(fallback, ctx.builder.variables(), ctx.node);
    }
    c.try_files = std::move(tf);
}

void merge_location(const ModuleConf& p, ModuleConf& ch) {
    const auto& parent = static_cast<const StaticLocConf&>(p);
    auto& child = static_cast<StaticLocConf&>(ch);
    if (!child.root && parent.root) {
        child.root = parent.root;
        child.alias = parent.alias;
        child.location = parent.location;
    }
    if (!child.index && parent.index) child.index = parent.index;
    // try_files is not inherited (nginx).
}

// Fills the defaults (root html, index index.html) where nothing set them.
void check(GenerationBuilder& b) {
    http::HttpConfig* h = b.http();
    if (h == nullptr) return;
    PathValue root;
    root.literal = b.prefix_path("html");
    std::vector<IndexEntry> index(1);
    index[0].literal = "index.html";
    auto fill = [&](http::Location& loc) {
        auto& c = static_cast<StaticLocConf&>(*loc.confs[static_index()]);
        if (!c.root) c.root = root;
        if (!c.index) c.index = index;
    };
    for (auto& server : h->servers) {
        fill(*server->defaults);
        for (auto& loc : server->locations) fill(*loc);
    }
}

// ---- paths -----------------------------------------------------------------------------------

enum class MapResult : uint8_t { Ok, NotFound, Error };

// True when a ".." segment appears in `path` from the segment holding position `from` on.
bool has_dotdot(std::string_view path, size_t from) {
    size_t start = from == 0 ? 0 : path.rfind('/', from - 1);
    start = start == std::string_view::npos ? 0 : start + 1;
    while (start <= path.size()) {
        size_t end = path.find('/', start);
        if (end == std::string_view::npos) end = path.size();
        if (path.substr(start, end - start) == "..") return true;
        start = end + 1;
    }
    return false;
}

// Appends the root (or alias) for this request to `out`.
void append_base(http::Request& r, const StaticLocConf& c, std::pmr::string& out) {
    const PathValue& v = *c.root;
    if (!v.variables) {
        out += v.literal;
        return;
    }
    std::string_view value = v.value.evaluate(r);
    if (value.empty() || value.front() != '/') out += v.prefix;
    out += value;
}

// The file for `name` (a URI, or a try_files name): root + name, or alias + name without the
// location prefix; NotFound when that would climb with "..". `strict`: with alias, a name outside
// the location prefix is an error (nginx: "alias" cannot be used where the URI was rewritten); else
// the whole name is appended.
MapResult map_path(http::Request& r, const StaticLocConf& c, std::string_view name,
                   std::pmr::string& out, size_t extra, bool strict) {
    out.clear();
    out.reserve((c.root->variables ? 64 : c.root->literal.size()) + name.size() + extra + 1);
    append_base(r, c, out);
    size_t join = out.size();
    if (c.alias) {
        if (name.substr(0, c.location.size()) == c.location) {
            name.remove_prefix(c.location.size());
        } else if (strict) {
            return MapResult::Error;
        }
    }
    out += name;
    // The URI is normalized: only its join with the base can form "..". A base from variables
    // (a header, say) is checked whole.
    if (has_dotdot(out, c.root->variables ? 0 : join)) return MapResult::NotFound;
    return MapResult::Ok;
}

// ---- responses -------------------------------------------------------------------------------

void log_failure(http::Request& r, const char* what, std::string_view path, int err) {
    LOG_ERROR("%s \"%.*s\" failed (%d: %s), client: %.*s, request: \"%.*s %.*s HTTP/1.%d\"", what,
              static_cast<int>(path.size()), path.data(), err, std::strerror(err),
              static_cast<int>(r.conn.remote_addr.size()), r.conn.remote_addr.data(),
              static_cast<int>(r.head.method_name.size()), r.head.method_name.data(),
              static_cast<int>(r.head.target.size()), r.head.target.data(), r.head.version_minor);
}

// The response for an open()/stat() error: 404, 403 or 500 (logged as nginx does).
Verdict fail_errno(http::Request& r, const char* what, std::string_view path, int err) {
    log_failure(r, what, path, err);
    if (err == ENOENT || err == ENOTDIR || err == ENAMETOOLONG) return r.respond_error(404);
    if (err == EACCES) return r.respond_error(403);
    return r.respond_error(500);
}

Verdict not_allowed(http::Request& r) {
    r.add_header("Allow", "GET, HEAD");
    return r.respond_error(405);
}

Verdict alias_error(http::Request& r, const StaticLocConf& c) {
    LOG_ERROR("\"alias\" cannot be used in location \"%s\" where URI was rewritten, URI: \"%.*s\"",
              c.location.c_str(), static_cast<int>(r.uri.size()), r.uri.data());
    return r.respond_error(500);
}

bool needs_escape(unsigned char c) {
    if (c <= 0x20 || c >= 0x7f) return true;
    switch (c) {
        case '"':
        case '#':
        case '%':
        case '<':
        case '>':
        case '?':
        case '\\':
        case '^':
        case '`':
        case '{':
        case '|':
        case '}':
            return true;
        default:
            return false;
    }
}

// 301 to the directory URI with a '/', absolute, the query string kept.
Verdict redirect_to_directory(http::Request& r) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::pmr::string url(r.arena);
    url.reserve(16 + r.head.host.size() + r.uri.size() * 3 + r.args.size());
    url += "http://";
    if (!r.head.host.empty()) {
        url += r.head.host;
    } else {
        bool v6 = r.conn.server_addr.find(':') != std::string_view::npos;
        if (v6) url += '[';
        url += r.conn.server_addr;
        if (v6) url += ']';
        if (r.conn.server_port != 80) {
            char port[8];
            int n = std::snprintf(port, sizeof(port), ":%u", r.conn.server_port);
            url.append(port, static_cast<size_t>(n));
        }
    }
    for (unsigned char ch : r.uri) {
        if (needs_escape(ch)) {
            url += '%';
            url += kHex[ch >> 4];
            url += kHex[ch & 0xf];
        } else {
            url += static_cast<char>(ch);
        }
    }
    url += '/';
    if (!r.args.empty()) {
        url += '?';
        url += r.args;
    }
    return r.redirect(301, url);
}

// ---- conditional requests and ranges ---------------------------------------------------------

int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const auto yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

int month_number(const char* name) {
    static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    for (int i = 0; i < 12; ++i) {
        if (std::strcmp(name, kMonths[i]) == 0) return i + 1;
    }
    return 0;
}

// An HTTP date (IMF-fixdate, RFC 850 or asctime) as seconds since the epoch, or -1.
int64_t parse_http_date(std::string_view text) {
    char buf[64];
    if (text.empty() || text.size() >= sizeof(buf)) return -1;
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = '\0';
    const int len = static_cast<int>(text.size());
    char wday[16];
    char mon[4];
    int day = 0, year = 0, hh = 0, mm = 0, ss = 0, n = -1;
    bool ok = std::sscanf(buf, "%15[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d GMT%n", wday, &day, mon,
                          &year, &hh, &mm, &ss, &n) == 7 &&
              n == len;
    if (!ok) {
        n = -1;
        ok = std::sscanf(buf, "%15[A-Za-z], %2d-%3[A-Za-z]-%2d %2d:%2d:%2d GMT%n", wday, &day, mon,
                         &year, &hh, &mm, &ss, &n) == 7 &&
             n == len;
        if (ok) year += year < 70 ? 2000 : 1900;
    }
    if (!ok) {
        n = -1;
        ok = std::sscanf(buf, "%3[A-Za-z] %3[A-Za-z] %2d %2d:%2d:%2d %4d%n", wday, mon, &day, &hh,
                         &mm, &ss, &year, &n) == 7 &&
             n == len;
    }
    int month = ok ? month_number(mon) : 0;
    if (month == 0 || day < 1 || day > 31 || year < 1970 || hh > 23 || mm > 59 || ss > 60 ||
        hh < 0 || mm < 0 || ss < 0) {
        return -1;
    }
    return days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day)) * 86400 +
           hh * 3600 + mm * 60 + ss;
}

// nginx's ngx_http_test_if_match: does the list in `value` name `etag`? `weak` allows W/ tags.
bool etag_listed(std::string_view value, std::string_view etag, bool weak) {
    if (value == "*") return true;
    size_t p = 0;
    const size_t end = value.size();
    while (p < end) {
        if (weak && end - p > 2 && value[p] == 'W' && value[p + 1] == '/') p += 2;
        if (etag.size() > end - p) return false;
        if (value.compare(p, etag.size(), etag) == 0) {
            p += etag.size();
            while (p < end && (value[p] == ' ' || value[p] == '\t')) ++p;
            if (p == end || value[p] == ',') return true;
        }
        while (p < end && value[p] != ',') ++p;
        while (p < end && (value[p] == ' ' || value[p] == '\t' || value[p] == ',')) ++p;
    }
    return false;
}

// The request headers the validators and ranges look at, found in one pass (first of each).
struct Preconditions {
    const http::Header* if_unmodified_since = nullptr;
    const http::Header* if_match = nullptr;
    const http::Header* if_modified_since = nullptr;
    const http::Header* if_none_match = nullptr;
    const http::Header* range = nullptr;
    const http::Header* if_range = nullptr;
};

void remember(const http::Header*& slot, const http::Header& h, std::string_view name) {
    if (slot == nullptr && h.name.size() == name.size() &&
        strncasecmp(h.name.data(), name.data(), name.size()) == 0) {
        slot = &h;
    }
}

Preconditions find_preconditions(const http::RequestHead& head) {
    Preconditions p;
    for (const http::Header& h : head.headers) {
        if (h.name.empty()) continue;
        char c = static_cast<char>(h.name[0] | 0x20);
        if (c == 'r') {
            remember(p.range, h, "Range");
        } else if (c == 'i') {
            remember(p.if_unmodified_since, h, "If-Unmodified-Since");
            remember(p.if_match, h, "If-Match");
            remember(p.if_modified_since, h, "If-Modified-Since");
            remember(p.if_none_match, h, "If-None-Match");
            remember(p.if_range, h, "If-Range");
        }
    }
    return p;
}

// nginx's not_modified filter: 0 (send the file), 304 or 412.
int check_conditions(const Preconditions& p, int64_t mtime, std::string_view etag) {
    if (p.if_unmodified_since != nullptr) {
        int64_t t = parse_http_date(p.if_unmodified_since->value);
        if (t < mtime) return 412;  // also when it does not parse (-1), as nginx
    }
    if (p.if_match != nullptr && !etag_listed(p.if_match->value, etag, false)) return 412;
    if (p.if_modified_since == nullptr && p.if_none_match == nullptr) return 0;
    if (p.if_modified_since != nullptr && parse_http_date(p.if_modified_since->value) != mtime) {
        return 0;
    }
    if (p.if_none_match != nullptr && !etag_listed(p.if_none_match->value, etag, true)) return 0;
    return 304;
}

// nginx's range filter for one range: 0 (send the whole file), 206 (`start`, `length` set) or
// 416. Several ranges are answered with the whole file.
int check_range(const Preconditions& p, uint64_t size, int64_t mtime, std::string_view etag,
                uint64_t& start_out, uint64_t& length_out) {
    const http::Header* h = p.range;
    if (h == nullptr || h->value.size() < 7 || strncasecmp(h->value.data(), "bytes=", 6) != 0) {
        return 0;
    }
    if (p.if_range != nullptr) {
        std::string_view v = p.if_range->value;
        if (v.size() >= 2 && v.back() == '"') {
            if (v != etag) return 0;
        } else if (parse_http_date(v) != mtime) {
            return 0;
        }
    }
    std::string_view s = h->value.substr(6);
    size_t i = 0;
    auto at = [&](size_t k) { return k < s.size() ? s[k] : '\0'; };
    auto digit = [&](size_t k) { return at(k) >= '0' && at(k) <= '9'; };
    constexpr uint64_t kCutoff = UINT64_MAX / 10;
    size_t ranges = 0;
    uint64_t total = 0;
    for (;;) {
        uint64_t start = 0, end = 0;
        bool suffix = false;
        bool open_end = false;
        while (at(i) == ' ') ++i;
        if (at(i) != '-') {
            if (!digit(i)) return 416;
            while (digit(i)) {
                if (start >= kCutoff) return 416;
                start = start * 10 + static_cast<uint64_t>(at(i++) - '0');
            }
            while (at(i) == ' ') ++i;
            if (at(i++) != '-') return 416;
            while (at(i) == ' ') ++i;
            if (at(i) == ',' || at(i) == '\0') {
                end = size;
                open_end = true;
            }
        } else {
            suffix = true;
            ++i;
        }
        if (!open_end) {
            if (!digit(i)) return 416;
            while (digit(i)) {
                if (end >= kCutoff) return 416;
                end = end * 10 + static_cast<uint64_t>(at(i++) - '0');
            }
            while (at(i) == ' ') ++i;
            if (at(i) != ',' && at(i) != '\0') return 416;
            if (suffix) {
                start = end < size ? size - end : 0;
                end = size - 1;
            }
            end = end >= size ? size : end + 1;
        }
        if (start < end) {
            ++ranges;
            total += end - start;
            start_out = start;
            length_out = end - start;
        } else if (start == 0) {
            return 0;
        }
        if (at(i++) != ',') break;
    }
    if (ranges == 0) return 416;
    if (ranges > 1 || total > size) return 0;
    return 206;
}

// ---- handlers --------------------------------------------------------------------------------

void set_file_body(http::Request& r, int fd, uint64_t offset, uint64_t length) {
    if (r.body.kind == http::BodyKind::File && r.body.fd >= 0) ::close(r.body.fd);
    r.body = http::ResponseBody{http::BodyKind::File, {}, fd, offset, length};
    r.content_length = static_cast<int64_t>(length);
}

Verdict serve_file(http::Request& r, std::pmr::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return fail_errno(r, "open()", path, errno);
    struct stat st;
    if (::fstat(fd, &st) != 0) {
        int err = errno;
        ::close(fd);
        log_failure(r, "fstat()", path, err);
        return r.respond_error(500);
    }
    if (S_ISDIR(st.st_mode)) {
        ::close(fd);
        return redirect_to_directory(r);
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        LOG_ERROR("\"%s\" is not a regular file, client: %.*s", path.c_str(),
                  static_cast<int>(r.conn.remote_addr.size()), r.conn.remote_addr.data());
        return r.respond_error(404);
    }
    if (r.head.method == http::Method::Post) {
        ::close(fd);
        return not_allowed(r);
    }

    const auto& core = r.loc_conf<http::HttpCoreLocConf>(http::http_core_index());
    const auto size = static_cast<uint64_t>(st.st_size);
    const auto mtime = static_cast<int64_t>(st.st_mtime);
    // An error page keeps its error status: no validators, conditionals or ranges (nginx).
    if (r.error_page_status > 0 && r.error_page_status != 200) {
        r.status = 200;
        r.content_type = core.type_for(path);
        r.last_modified = -1;
        set_file_body(r, fd, 0, size);
        return Verdict::Respond;
    }

    char etag_buf[48];
    int n = std::snprintf(etag_buf, sizeof(etag_buf), "\"%" PRIx64 "-%" PRIx64 "\"",
                          static_cast<uint64_t>(mtime), size);
    std::string_view etag = r.copy(std::string_view(etag_buf, static_cast<size_t>(n)));

    const Preconditions pre = find_preconditions(r.head);
    int cond = check_conditions(pre, mtime, etag);
    if (cond == 412) {
        ::close(fd);
        return r.respond_error(412);
    }
    if (cond == 304) {
        ::close(fd);
        Verdict v = r.respond(304, {}, {});
        r.last_modified = mtime;
        r.add_header("ETag", etag);
        return v;
    }

    uint64_t start = 0;
    uint64_t length = size;
    int range = check_range(pre, size, mtime, etag, start, length);
    if (range == 416) {
        ::close(fd);
        char cr[48];
        int m = std::snprintf(cr, sizeof(cr), "bytes */%" PRIu64, size);
        r.add_header("Content-Range", r.copy(std::string_view(cr, static_cast<size_t>(m))));
        return r.respond_error(416);
    }
    r.status = 200;
    r.content_type = core.type_for(path);
    r.last_modified = mtime;
    r.add_header("ETag", etag);
    if (range == 206) {
        char cr[64];
        int m = std::snprintf(cr, sizeof(cr), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, start,
                              start + length - 1, size);
        r.status = 206;
        r.add_header("Content-Range", r.copy(std::string_view(cr, static_cast<size_t>(m))));
        set_file_body(r, fd, start, length);
    } else {
        r.add_header("Accept-Ranges", "bytes");
        set_file_body(r, fd, 0, size);
    }
    return Verdict::Respond;
}

// A URI ending in '/': the first index file that exists, else 403 (directory) or 404.
Verdict serve_index(http::Request& r, const StaticLocConf& c, std::pmr::string& path) {
    const size_t dir_len = path.size();
    for (const IndexEntry& e : *c.index) {
        std::string_view name = e.variables ? e.value.evaluate(r) : std::string_view(e.literal);
        if (name.empty() || name.find('\0') != std::string_view::npos) continue;
        if (name.front() == '/') return r.internal_redirect(name, r.args);
        path.resize(dir_len);
        path += name;
        struct stat st;
        if (::stat(path.c_str(), &st) == 0) {
            std::pmr::string uri(r.arena);
            uri.reserve(r.uri.size() + name.size());
            uri += r.uri;
            uri += name;
            return r.internal_redirect(uri, r.args);
        }
        int err = errno;
        if (err == ENOENT) continue;
        return fail_errno(r, "stat()", path, err);
    }
    path.resize(dir_len);
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return fail_errno(r, "stat()", path, errno);
    if (!S_ISDIR(st.st_mode)) return r.respond_error(404);
    LOG_ERROR("directory index of \"%s\" is forbidden, client: %.*s", path.c_str(),
              static_cast<int>(r.conn.remote_addr.size()), r.conn.remote_addr.data());
    return r.respond_error(403);
}

Verdict run_static(http::Request& r, const void* data) {
    const auto& c = *static_cast<const StaticLocConf*>(data);
    http::Method m = r.head.method;
    if (m != http::Method::Get && m != http::Method::Head && m != http::Method::Post) {
        return not_allowed(r);
    }
    std::string_view uri = r.uri;
    if (uri.empty() || uri.front() != '/' || uri.find('\0') != std::string_view::npos) {
        return r.respond_error(404);
    }
    std::pmr::string path(r.arena);
    switch (map_path(r, c, uri, path, 16, true)) {
        case MapResult::Ok:
            break;
        case MapResult::NotFound:
            return r.respond_error(404);
        case MapResult::Error:
            return alias_error(r, c);
    }
    if (uri.back() == '/') return serve_index(r, c, path);
    return serve_file(r, path);
}

Verdict run_try_files(http::Request& r, const void* data) {
    const auto& c = *static_cast<const StaticLocConf*>(data);
    const TryFiles& tf = *c.try_files;
    std::pmr::string path(r.arena);
    for (const TryEntry& e : tf.files) {
        std::string_view name = e.name.evaluate(r);
        if (name.empty() || name.find('\0') != std::string_view::npos) continue;
        if (map_path(r, c, name, path, 0, false) != MapResult::Ok) continue;
        struct stat st;
        if (::stat(path.c_str(), &st) != 0) {
            int err = errno;
            if (err != ENOENT && err != ENOTDIR && err != ENAMETOOLONG) {
                log_failure(r, "stat()", path, err);
            }
            continue;
        }
        if (S_ISDIR(st.st_mode) != e.test_dir) continue;
        if (c.alias && name.substr(0, c.location.size()) != c.location) {
            std::pmr::string uri(r.arena);
            uri += c.location;
            uri += name;
            r.uri = r.copy(uri);
        } else {
            r.uri = r.copy(name);
        }
        return Verdict::Next;
    }
    if (tf.code != 0) return tf.code >= 400 ? r.respond_error(tf.code) : r.respond(tf.code, {}, {});
    std::string_view target = tf.fallback.evaluate(r);
    if (!target.empty() && target.front() == '@') return r.internal_redirect(target, r.args);
    if (target.empty() || target.front() != '/') {
        LOG_ERROR("try_files fallback \"%.*s\" is not a URI or a named location",
                  static_cast<int>(target.size()), target.data());
        return r.respond_error(500);
    }
    std::string_view args;
    if (size_t q = target.find('?'); q != std::string_view::npos) {
        args = target.substr(q + 1);
        target = target.substr(0, q);
    }
    return r.internal_redirect(target, args);
}

// ---- variables -------------------------------------------------------------------------------

bool v_document_root(http::Request& r, std::string_view, uintptr_t, std::string_view& out) {
    const auto& c = r.loc_conf<StaticLocConf>(static_index());
    if (!c.root) return false;
    if (!c.root->variables) {
        out = c.root->literal;
        return true;
    }
    std::pmr::string base(r.arena);
    append_base(r, c, base);
    out = r.copy(base);
    return true;
}

bool v_request_filename(http::Request& r, std::string_view, uintptr_t, std::string_view& out) {
    const auto& c = r.loc_conf<StaticLocConf>(static_index());
    if (!c.root || r.uri.empty() || r.uri.front() != '/') return false;
    std::pmr::string path(r.arena);
    if (map_path(r, c, r.uri, path, 0, false) != MapResult::Ok) return false;
    out = r.copy(path);
    return true;
}

void register_variables(VariableRegistry& registry) {
    registry.add("document_root", v_document_root, 0, false);
    registry.add("request_filename", v_request_filename, 0, false);
}

void attach(LocationBuilder& lb) {
    const auto& c = lb.conf<StaticLocConf>(static_index());
    if (c.try_files) lb.add(Phase::Content, run_try_files, &c);
    lb.add(Phase::Content, run_static, &c);
}

constexpr uint32_t kHttpServerLocation = kHttpContext | kServerContext | kLocationContext;

constexpr Directive kDirectives[] = {
    {"root", kHttpServerLocation, 1, 1, false, ConfScope::Location, set_root},
    {"alias", kLocationContext, 1, 1, false, ConfScope::Location, set_alias},
    {"index", kHttpServerLocation, 1, kUnlimitedArgs, false, ConfScope::Location, set_index},
    {"try_files", kServerContext | kLocationContext, 2, kUnlimitedArgs, false, ConfScope::Location,
     set_try_files},
};

}  // namespace

extern const Module static_module = {
    .name = "static",
    .directives = kDirectives,
    .create_location = [] { return std::unique_ptr<ModuleConf>(new StaticLocConf()); },
    .merge_location = merge_location,
    .register_variables = register_variables,
    .check = check,
    .attach_location = attach,
};

namespace {
size_t static_index() {
    static const size_t index = module_index(static_module);
    return index;
}
}  // namespace

}  // namespace tollgate
