// The map module's matching (map::Map::find) and block compilation, without a request.
#include <gtest/gtest.h>

#include <string>

#include "core/config/error.hpp"
#include "core/config/syntax.hpp"
#include "modules/map/map.hpp"

namespace tollgate::map {
namespace {

bool no_value(http::Request&, std::string_view, uintptr_t, std::string_view&) {
    return false;
}

class MapMatchTest : public ::testing::Test {
  protected:
    MapMatchTest() {
        registry_.add("host", no_value);
        registry_.add("uri", no_value);
        registry_.add_prefix("http_", no_value);
    }

    // Compiles the first directive of `text`, a `map` block.
    std::unique_ptr<Map> compile(const std::string& text) {
        conf::ParseOptions o;
        o.allow_include = false;
        parsed_ = conf::parse_string(text, "t.conf", o);
        return Map::compile(parsed_.root.children.at(0), registry_);
    }
    std::string error_of(const std::string& text) {
        try {
            compile(text);
        } catch (const conf::ConfigError& e) {
            return e.what();
        }
        return "no error";
    }
    // The value's config text for `key`, "<none>" when there is no value (no default).
    std::string lookup(const Map& m, std::string_view key) {
        std::string_view subject;
        const MapValue* v = m.find(key, ovector_, subject);
        return v != nullptr ? v->source() : "<none>";
    }
    // Capture group `g` of the last lookup's regex match, "<unset>" when none.
    std::string group(std::string_view key, size_t g) const {
        if (ovector_[2 * g] == SIZE_MAX) return "<unset>";
        return std::string(key.substr(ovector_[2 * g], ovector_[2 * g + 1] - ovector_[2 * g]));
    }

    VariableRegistry registry_;
    conf::ParsedConfig parsed_;
    size_t ovector_[2 * kMaxCaptures] = {};
};

TEST_F(MapMatchTest, ExactKeysIgnoreCase) {
    auto m = compile("map $http_x_tier $rate { default 1r/s; pro 10r/s; Team 50r/s; }");
    EXPECT_EQ(m->variable(), "rate");
    EXPECT_EQ(lookup(*m, "pro"), "10r/s");
    EXPECT_EQ(lookup(*m, "PRO"), "10r/s");
    EXPECT_EQ(lookup(*m, "team"), "50r/s");
    EXPECT_EQ(lookup(*m, "pro2"), "1r/s");
    EXPECT_EQ(lookup(*m, ""), "1r/s");
}

TEST_F(MapMatchTest, NoDefaultFindsNothing) {
    auto m = compile("map $uri $x { /a 1; }");
    EXPECT_EQ(lookup(*m, "/a"), "1");
    EXPECT_EQ(lookup(*m, "/b"), "<none>");
}

TEST_F(MapMatchTest, EmptyKeyMatchesEmptySource) {
    auto m = compile("map $http_x $x { default d; \"\" empty; ~.* any; }");
    EXPECT_EQ(lookup(*m, ""), "empty");
    EXPECT_EQ(lookup(*m, "z"), "any");
}

TEST_F(MapMatchTest, RegexesRunInOrderAfterExactKeys) {
    auto m = compile(R"(map $uri $x {
        default none;
        ~^/api/v(\d+)/ "v$1";
        ~^/api/ api;
        ~*\.PNG$ image;
        /api/v1/exact exact;
    })");
    EXPECT_EQ(lookup(*m, "/api/v1/exact"), "exact");
    EXPECT_EQ(lookup(*m, "/api/v2/users"), "v$1");
    EXPECT_EQ(group("/api/v2/users", 1), "2");
    EXPECT_EQ(lookup(*m, "/api/users"), "api");
    EXPECT_EQ(lookup(*m, "/a.png"), "image");  // ~* ignores case
    EXPECT_EQ(lookup(*m, "/other"), "none");
    EXPECT_EQ(ovector_[0], SIZE_MAX);
}

TEST_F(MapMatchTest, TildeRegexIsCaseSensitive) {
    auto m = compile("map $uri $x { default no; ~^/Admin yes; }");
    EXPECT_EQ(lookup(*m, "/Admin/x"), "yes");
    EXPECT_EQ(lookup(*m, "/admin/x"), "no");
}

TEST_F(MapMatchTest, RegexNeverSeesEmptySource) {
    auto m = compile("map $uri $x { default d; ~^$ empty; }");
    EXPECT_EQ(lookup(*m, ""), "d");
}

TEST_F(MapMatchTest, NamedCaptures) {
    auto m = compile(R"(map $uri $x { ~^/u/(?<user>[a-z]+)/(?<id>\d+) "$user-$id-$host"; })");
    EXPECT_EQ(lookup(*m, "/u/bob/42"), "$user-$id-$host");
    EXPECT_EQ(group("/u/bob/42", 1), "bob");
    EXPECT_EQ(group("/u/bob/42", 2), "42");
}

TEST_F(MapMatchTest, BackslashEscapesParameterNames) {
    auto m = compile(R"(map $uri $x { default d; \default literal; \~tilde t; \hostnames h; })");
    EXPECT_EQ(lookup(*m, "default"), "literal");
    EXPECT_EQ(lookup(*m, "~tilde"), "t");
    EXPECT_EQ(lookup(*m, "hostnames"), "h");
    EXPECT_EQ(lookup(*m, "tilde"), "d");
}

TEST_F(MapMatchTest, VolatileAndHostnamesFlags) {
    auto m = compile("map $host $x { volatile; default 1; }");
    EXPECT_TRUE(m->is_volatile());
    EXPECT_FALSE(m->hostnames());
    auto h = compile("map $host $x { hostnames; }");
    EXPECT_TRUE(h->hostnames());
    EXPECT_FALSE(h->is_volatile());
}

TEST_F(MapMatchTest, WildcardsAreExactKeysWithoutHostnames) {
    auto m = compile("map $host $x { default d; *.example.com star; }");
    EXPECT_EQ(lookup(*m, "a.example.com"), "d");
    EXPECT_EQ(lookup(*m, "*.EXAMPLE.com"), "star");
}

TEST_F(MapMatchTest, HostnamePriority) {
    auto m = compile(R"(map $host $x {
        hostnames;
        default def;
        example.com exact;
        *.example.com head;
        *.b.example.com longer-head;
        .example.net dot;
        www.* tail;
        www.example.* longer-tail;
        ~^www\.example\.com$ regex;
        ~^api\. api-regex;
    })");
    EXPECT_EQ(lookup(*m, "example.com"), "exact");
    EXPECT_EQ(lookup(*m, "EXAMPLE.COM."), "exact");  // one trailing dot is dropped
    EXPECT_EQ(lookup(*m, "a.example.com"), "head");
    EXPECT_EQ(lookup(*m, "x.y.example.com"), "head");
    EXPECT_EQ(lookup(*m, "b.example.com"), "head");  // *.b.example.com needs a label before b
    EXPECT_EQ(lookup(*m, "a.b.example.com"), "longer-head");
    EXPECT_EQ(lookup(*m, "www.example.com"), "head");  // leading mask beats trailing and regex
    EXPECT_EQ(lookup(*m, "example.net"), "dot");
    EXPECT_EQ(lookup(*m, "a.example.net"), "dot");
    EXPECT_EQ(lookup(*m, "www.example.org"), "longer-tail");
    EXPECT_EQ(lookup(*m, "www.example.co.uk"), "longer-tail");
    EXPECT_EQ(lookup(*m, "www.other.org"), "tail");
    EXPECT_EQ(lookup(*m, "www"), "def");  // a trailing mask needs something after the dot
    EXPECT_EQ(lookup(*m, "www.example"), "tail");
    EXPECT_EQ(lookup(*m, "api.test"), "api-regex");
    EXPECT_EQ(lookup(*m, "notexample.com"), "def");
    EXPECT_EQ(lookup(*m, "other"), "def");
}

TEST_F(MapMatchTest, Errors) {
    EXPECT_EQ(error_of("map $uri $x { a 1; A 2; }"), "t.conf:1: conflicting parameter \"A\"");
    EXPECT_EQ(error_of("map $uri $x {\n default 1;\n default 2; }"),
              "t.conf:3: duplicate default map parameter");
    EXPECT_EQ(error_of("map $uri $x { a; }"), "t.conf:1: invalid number of the map parameters");
    EXPECT_EQ(error_of("map $uri $x { a 1 2; }"), "t.conf:1: invalid number of the map parameters");
    EXPECT_EQ(error_of("map $uri $x { a { } }"), "t.conf:1: unexpected \"{\"");
    EXPECT_EQ(error_of("map $uri x { }"), "t.conf:1: invalid variable name \"x\"");
    EXPECT_EQ(error_of("map $uri $ { }"), "t.conf:1: invalid variable name \"$\"");
    EXPECT_EQ(error_of("map $nope $x { }"), "t.conf:1: unknown \"nope\" variable");
    EXPECT_EQ(error_of("map $uri $x { a $nope; }"), "t.conf:1: unknown \"nope\" variable");
    EXPECT_EQ(error_of("map $uri $x { a $named; }"), "t.conf:1: unknown \"named\" variable");
    EXPECT_EQ(error_of("map $uri $x { a \"x$\"; }"), "t.conf:1: invalid variable name in \"x$\"");
    std::string re = error_of("map $uri $x { ~^(a 1; }");
    EXPECT_EQ(re.rfind("t.conf:1: invalid regex \"^(a\": ", 0), 0u) << re;
}

TEST_F(MapMatchTest, HostnameErrors) {
    auto err = [&](const std::string& keys) {
        return error_of("map $host $x { hostnames; " + keys + " }");
    };
    EXPECT_EQ(err("*.a.* 1;"), "t.conf:1: invalid hostname or wildcard \"*.a.*\"");
    EXPECT_EQ(err("a..b 1;"), "t.conf:1: invalid hostname or wildcard \"a..b\"");
    EXPECT_EQ(err("a*b 1;"), "t.conf:1: invalid hostname or wildcard \"a*b\"");
    EXPECT_EQ(err("*a.com 1;"), "t.conf:1: invalid hostname or wildcard \"*a.com\"");
    EXPECT_EQ(err("example.com 1; .example.com 2;"),
              "t.conf:1: conflicting parameter \".example.com\"");
    EXPECT_EQ(err(".example.com 1; example.com 2;"),
              "t.conf:1: conflicting parameter \"example.com\"");
    EXPECT_EQ(err("*.example.com 1; .EXAMPLE.com 2;"),
              "t.conf:1: conflicting parameter \".EXAMPLE.com\"");
    EXPECT_EQ(err("www.* 1; WWW.* 2;"), "t.conf:1: conflicting parameter \"WWW.*\"");
    EXPECT_EQ(err("*.example.com 1; example.com 2;"), "no error");  // different names
}

TEST_F(MapMatchTest, ManyLabelsAreLookedUpOnlyAsFarAsTheLongestMask) {
    auto m = compile("map $host $x { hostnames; default d; *.example.com head; www.* tail; }");
    std::string deep;
    for (int i = 0; i < 3000; ++i) deep += "a.";
    EXPECT_EQ(lookup(*m, deep + "example.com"), "head");
    EXPECT_EQ(lookup(*m, "www." + deep + "org"), "tail");
    EXPECT_EQ(lookup(*m, deep + "org"), "d");
    EXPECT_EQ(lookup(*m, std::string(5000, '.')), "d");
    std::string labels;
    for (int i = 0; i < 130; ++i) labels += "a.";
    EXPECT_EQ(error_of("map $host $x { hostnames; *." + labels + "com 1; }"),
              "t.conf:1: too many labels in \"*." + labels + "com\"");
}

TEST_F(MapMatchTest, CapturesBeyondNineAndUnsetGroups) {
    auto m = compile(R"(map $uri $x { ~^(a)|(b)$ "$1$2"; })");
    EXPECT_EQ(lookup(*m, "b"), "$1$2");
    EXPECT_EQ(group("b", 1), "<unset>");
    EXPECT_EQ(group("b", 2), "b");
}

}  // namespace
}  // namespace tollgate::map
