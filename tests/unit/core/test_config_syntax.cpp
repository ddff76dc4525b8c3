#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/config/syntax.hpp"

namespace tollgate::conf {
namespace {

ParsedConfig parse(std::string_view text) {
    ParseOptions options;
    options.allow_include = false;
    return parse_string(text, "test.conf", options);
}

// Returns what() of the ConfigError thrown by parsing `text`, or "<no error>".
std::string error_of(std::string_view text, const std::string& name = "test.conf") {
    ParseOptions options;
    options.allow_include = false;
    try {
        parse_string(text, name, options);
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "<no error>";
}

std::vector<std::string> values(const Node& node) {
    std::vector<std::string> out;
    for (const Arg& a : node.args) out.push_back(a.value);
    return out;
}

using Strings = std::vector<std::string>;

// --- ConfigError -------------------------------------------------------------------------------

TEST(ConfigError, FormatsFileLineMessage) {
    ConfigError e("a.conf", 12, "bad thing");
    EXPECT_STREQ(e.what(), "a.conf:12: bad thing");
    EXPECT_EQ(e.file(), "a.conf");
    EXPECT_EQ(e.line(), 12);
    EXPECT_EQ(e.message(), "bad thing");
}

TEST(ConfigError, LineZeroOmitsLine) {
    ConfigError e("/etc/t.conf", 0, "open() failed");
    EXPECT_STREQ(e.what(), "/etc/t.conf: open() failed");
}

TEST(ConfigError, EmptyFileIsMessageOnly) {
    EXPECT_STREQ(ConfigError("", 3, "oops").what(), "oops");
    EXPECT_STREQ(ConfigError("", 0, "oops").what(), "oops");
}

TEST(ConfigError, NodeFailUsesNodeLocation) {
    ParsedConfig c = parse("a;\n\n  listen 80 x;\n");
    const Node& n = c.root.children.at(1);
    try {
        n.fail("invalid parameter \"x\"");
        FAIL() << "fail() returned";
    } catch (const ConfigError& e) {
        EXPECT_STREQ(e.what(), "test.conf:3: invalid parameter \"x\"");
        EXPECT_EQ(e.line(), 3);
        EXPECT_EQ(e.file(), "test.conf");
    }
}

TEST(ConfigError, NodeFailWithoutFile) {
    Node n;
    n.line = 4;
    EXPECT_THROW(n.fail("x"), ConfigError);
    try {
        n.fail("x");
    } catch (const ConfigError& e) {
        EXPECT_STREQ(e.what(), "x");
    }
}

// --- Structure ---------------------------------------------------------------------------------

TEST(ConfigSyntax, EmptyInput) {
    for (const char* text : {"", "   \n\t\r\n", "# only a comment", "# c1\n  # c2\n"}) {
        ParsedConfig c = parse(text);
        EXPECT_TRUE(c.root.children.empty()) << text;
    }
}

TEST(ConfigSyntax, RootNode) {
    ParsedConfig c = parse("a;");
    EXPECT_EQ(c.root.name, "");
    EXPECT_TRUE(c.root.is_block);
    EXPECT_TRUE(c.root.args.empty());
    ASSERT_TRUE(c.root.file);
    EXPECT_EQ(*c.root.file, "test.conf");
    EXPECT_EQ(c.root.line, 0);
    EXPECT_TRUE(c.files.empty());  // parse_string reads no files
}

TEST(ConfigSyntax, SimpleDirectives) {
    ParsedConfig c = parse("worker_processes 4;\nerror_log logs/error.log  warn ;daemon off;");
    ASSERT_EQ(c.root.children.size(), 3u);
    const Node& a = c.root.children[0];
    EXPECT_EQ(a.name, "worker_processes");
    EXPECT_EQ(values(a), Strings{"4"});
    EXPECT_FALSE(a.is_block);
    EXPECT_TRUE(a.children.empty());
    EXPECT_EQ(a.line, 1);
    ASSERT_TRUE(a.file);
    EXPECT_EQ(*a.file, "test.conf");
    EXPECT_EQ(values(c.root.children[1]), (Strings{"logs/error.log", "warn"}));
    EXPECT_EQ(c.root.children[1].line, 2);
    EXPECT_EQ(c.root.children[2].name, "daemon");
    EXPECT_EQ(c.root.children[2].line, 2);
}

TEST(ConfigSyntax, DirectiveWithoutArgs) {
    ParsedConfig c = parse("a;b{}");
    ASSERT_EQ(c.root.children.size(), 2u);
    EXPECT_TRUE(c.root.children[0].args.empty());
    EXPECT_TRUE(c.root.children[1].is_block);
    EXPECT_TRUE(c.root.children[1].children.empty());
}

TEST(ConfigSyntax, NestedBlocks) {
    ParsedConfig c = parse(
        "http {\n"
        "    server {\n"
        "        listen 80;\n"
        "        location /api/ {\n"
        "            proxy_pass http://up;\n"
        "        }\n"
        "    }\n"
        "    keepalive_timeout 65;\n"
        "}\n");
    ASSERT_EQ(c.root.children.size(), 1u);
    const Node& http = c.root.children[0];
    EXPECT_TRUE(http.is_block);
    EXPECT_EQ(http.line, 1);
    ASSERT_EQ(http.children.size(), 2u);
    const Node& server = http.children[0];
    EXPECT_EQ(server.name, "server");
    EXPECT_EQ(server.line, 2);
    ASSERT_EQ(server.children.size(), 2u);
    EXPECT_EQ(server.children[0].name, "listen");
    EXPECT_EQ(server.children[0].line, 3);
    const Node& loc = server.children[1];
    EXPECT_EQ(loc.name, "location");
    EXPECT_EQ(values(loc), Strings{"/api/"});
    EXPECT_TRUE(loc.is_block);
    EXPECT_EQ(loc.line, 4);
    ASSERT_EQ(loc.children.size(), 1u);
    EXPECT_EQ(values(loc.children[0]), Strings{"http://up"});
    EXPECT_EQ(loc.children[0].line, 5);
    EXPECT_EQ(http.children[1].name, "keepalive_timeout");
    EXPECT_EQ(http.children[1].line, 8);
}

TEST(ConfigSyntax, PunctuationEndsBareTokens) {
    ParsedConfig c = parse("server{listen 80;location /x{return 204;}}a b;");
    ASSERT_EQ(c.root.children.size(), 2u);
    const Node& server = c.root.children[0];
    EXPECT_EQ(server.name, "server");
    ASSERT_EQ(server.children.size(), 2u);
    EXPECT_EQ(values(server.children[0]), Strings{"80"});
    EXPECT_EQ(values(server.children[1]), Strings{"/x"});
    EXPECT_EQ(values(server.children[1].children.at(0)), Strings{"204"});
    EXPECT_EQ(values(c.root.children[1]), Strings{"b"});
}

TEST(ConfigSyntax, WhitespaceKinds) {
    ParsedConfig c = parse("a\tb\r\nc\r\n;\r\nd;");
    ASSERT_EQ(c.root.children.size(), 2u);
    EXPECT_EQ(values(c.root.children[0]), (Strings{"b", "c"}));
    EXPECT_EQ(c.root.children[1].line, 4);
}

// --- Comments ----------------------------------------------------------------------------------

TEST(ConfigSyntax, CommentsAtTokenStart) {
    ParsedConfig c = parse(
        "# leading\n"
        "a 1; # trailing\n"
        "b # inside a directive\n"
        "  2;#right after semicolon\n"
        "c{#after brace\n}\n");
    ASSERT_EQ(c.root.children.size(), 3u);
    EXPECT_EQ(values(c.root.children[0]), Strings{"1"});
    EXPECT_EQ(c.root.children[0].line, 2);
    EXPECT_EQ(values(c.root.children[1]), Strings{"2"});
    EXPECT_EQ(c.root.children[1].line, 3);
    EXPECT_EQ(c.root.children[2].line, 5);
}

TEST(ConfigSyntax, HashInsideTokenIsLiteral) {
    ParsedConfig c = parse("a#b c#d \"#e\" '#f';");
    ASSERT_EQ(c.root.children.size(), 1u);
    EXPECT_EQ(c.root.children[0].name, "a#b");
    EXPECT_EQ(values(c.root.children[0]), (Strings{"c#d", "#e", "#f"}));
}

TEST(ConfigSyntax, CommentDoesNotSwallowNextLine) {
    ParsedConfig c = parse("a # x ; {\n;");
    ASSERT_EQ(c.root.children.size(), 1u);
    EXPECT_TRUE(c.root.children[0].args.empty());
}

// --- Quoting and escapes -----------------------------------------------------------------------

TEST(ConfigSyntax, QuotedArgs) {
    ParsedConfig c = parse("a \"x y\" 'p;q{r}' \"\" '' bare;");
    const Node& n = c.root.children.at(0);
    ASSERT_EQ(n.args.size(), 5u);
    EXPECT_EQ(n.args[0].value, "x y");
    EXPECT_TRUE(n.args[0].quoted);
    EXPECT_EQ(n.args[1].value, "p;q{r}");
    EXPECT_TRUE(n.args[1].quoted);
    EXPECT_EQ(n.args[2].value, "");
    EXPECT_TRUE(n.args[2].quoted);
    EXPECT_EQ(n.args[3].value, "");
    EXPECT_TRUE(n.args[3].quoted);
    EXPECT_EQ(n.args[4].value, "bare");
    EXPECT_FALSE(n.args[4].quoted);
}

TEST(ConfigSyntax, QuoteFollowedByPunctuation) {
    ParsedConfig c = parse("a \"x\";b 'y'{c \"z\";}");
    ASSERT_EQ(c.root.children.size(), 2u);
    EXPECT_EQ(values(c.root.children[0]), Strings{"x"});
    EXPECT_EQ(values(c.root.children[1]), Strings{"y"});
    EXPECT_TRUE(c.root.children[1].is_block);
    EXPECT_EQ(values(c.root.children[1].children.at(0)), Strings{"z"});
}

TEST(ConfigSyntax, QuotedEscapes) {
    ParsedConfig c = parse(R"(a "q\"q" "s\'s" 'd\"d' "b\\b" "n\nr\rt\t" 's\'';)");
    EXPECT_EQ(values(c.root.children.at(0)),
              (Strings{"q\"q", "s's", "d\"d", "b\\b", "n\nr\rt\t", "s'"}));
}

TEST(ConfigSyntax, QuotedUnknownEscapesKeepBackslash) {
    ParsedConfig c = parse(R"(location ~ "\.php$" '\d+\/x' "\$";)");
    EXPECT_EQ(values(c.root.children.at(0)), (Strings{"~", "\\.php$", "\\d+\\/x", "\\$"}));
}

TEST(ConfigSyntax, BareBackslashes) {
    ParsedConfig c = parse(R"(location ~ \.php$ ^/a\d+ a\;b a\{b a\ b a\"b a\\b a\tb;)");
    EXPECT_EQ(values(c.root.children.at(0)), (Strings{"~", "\\.php$", "^/a\\d+", "a\\;b", "a\\{b",
                                                      "a\\ b", "a\"b", "a\\b", "a\tb"}));
}

TEST(ConfigSyntax, BareBackslashAtEndOfText) {
    EXPECT_EQ(error_of("a b\\"), "test.conf:1: unexpected end of file, expecting \";\" or \"}\"");
}

TEST(ConfigSyntax, QuoteInsideBareTokenIsLiteral) {
    ParsedConfig c = parse("a b\"c d'e;");
    EXPECT_EQ(values(c.root.children.at(0)), (Strings{"b\"c", "d'e"}));
    EXPECT_FALSE(c.root.children[0].args[0].quoted);
}

TEST(ConfigSyntax, QuotedDirectiveName) {
    ParsedConfig c = parse("\"server_name\" x;'a b' {}");
    ASSERT_EQ(c.root.children.size(), 2u);
    EXPECT_EQ(c.root.children[0].name, "server_name");
    EXPECT_EQ(c.root.children[1].name, "a b");
    EXPECT_TRUE(c.root.children[1].is_block);
}

TEST(ConfigSyntax, MultiLineQuotedStringCountsLines) {
    ParsedConfig c = parse("a \"line1\nline2\n\";\nb 'x\\\ny';\nc;");
    ASSERT_EQ(c.root.children.size(), 3u);
    EXPECT_EQ(values(c.root.children[0]), Strings{"line1\nline2\n"});
    EXPECT_EQ(c.root.children[1].line, 4);
    EXPECT_EQ(values(c.root.children[1]), Strings{"x\\\ny"});
    EXPECT_EQ(c.root.children[2].line, 6);
}

TEST(ConfigSyntax, LineOfDirectiveIsLineOfName) {
    ParsedConfig c = parse("\n\n  a\n  b\n  c\n  ;\nd\n{\n}");
    ASSERT_EQ(c.root.children.size(), 2u);
    EXPECT_EQ(c.root.children[0].line, 3);
    EXPECT_EQ(c.root.children[1].line, 7);
}

// --- Variables ---------------------------------------------------------------------------------

TEST(ConfigSyntax, VariablesKeptLiterally) {
    ParsedConfig c = parse("set $a ${b}c $d${e}f \"${host}:$port\" x${y}{}");
    const Node& n = c.root.children.at(0);
    EXPECT_EQ(n.name, "set");
    EXPECT_EQ(values(n), (Strings{"$a", "${b}c", "$d${e}f", "${host}:$port", "x${y}"}));
    EXPECT_TRUE(n.is_block);
}

TEST(ConfigSyntax, VariableBracesDoNotEndToken) {
    ParsedConfig c = parse("a ${x}{ b; }");
    const Node& n = c.root.children.at(0);
    EXPECT_EQ(values(n), Strings{"${x}"});
    EXPECT_TRUE(n.is_block);
    ASSERT_EQ(n.children.size(), 1u);
}

TEST(ConfigSyntax, DollarWithoutBraceIsPlain) {
    ParsedConfig c = parse("a $ b$ $;");
    EXPECT_EQ(values(c.root.children.at(0)), (Strings{"$", "b$", "$"}));
}

// --- Errors (exact text) -----------------------------------------------------------------------

TEST(ConfigSyntaxError, EofExpectingSemicolonOrBrace) {
    EXPECT_EQ(error_of("worker_processes 4"),
              "test.conf:1: unexpected end of file, expecting \";\" or \"}\"");
    EXPECT_EQ(error_of("a;\nb c\n"),
              "test.conf:3: unexpected end of file, expecting \";\" or \"}\"");
    EXPECT_EQ(error_of("http {\n  a b"),
              "test.conf:2: unexpected end of file, expecting \";\" or \"}\"");
    EXPECT_EQ(error_of("a \"b\""), "test.conf:1: unexpected end of file, expecting \";\" or \"}\"");
}

TEST(ConfigSyntaxError, EofExpectingCloseBrace) {
    EXPECT_EQ(error_of("http {"), "test.conf:1: unexpected end of file, expecting \"}\"");
    EXPECT_EQ(error_of("http {\n  server {\n  }\n"),
              "test.conf:4: unexpected end of file, expecting \"}\"");
    EXPECT_EQ(error_of("a {\nb;\n# }"), "test.conf:3: unexpected end of file, expecting \"}\"");
}

TEST(ConfigSyntaxError, StrayCloseBrace) {
    EXPECT_EQ(error_of("}"), "test.conf:1: unexpected \"}\"");
    EXPECT_EQ(error_of("a;\n}"), "test.conf:2: unexpected \"}\"");
    EXPECT_EQ(error_of("a {\n}\n}\n"), "test.conf:3: unexpected \"}\"");
}

TEST(ConfigSyntaxError, CloseBraceInsideDirective) {
    EXPECT_EQ(error_of("server {\n  listen 80\n}"), "test.conf:3: unexpected \"}\"");
    EXPECT_EQ(error_of("a b}"), "test.conf:1: unexpected \"}\"");
    EXPECT_EQ(error_of("b 'y'{c \"z\"}"), "test.conf:1: unexpected \"}\"");
}

TEST(ConfigSyntaxError, SemicolonWithoutName) {
    EXPECT_EQ(error_of(";"), "test.conf:1: unexpected \";\"");
    EXPECT_EQ(error_of("a;;"), "test.conf:1: unexpected \";\"");
    EXPECT_EQ(error_of("a {\n  ;\n}"), "test.conf:2: unexpected \";\"");
}

TEST(ConfigSyntaxError, OpenBraceWithoutName) {
    EXPECT_EQ(error_of("{"), "test.conf:1: unexpected \"{\"");
    EXPECT_EQ(error_of("a;\n{ b; }"), "test.conf:2: unexpected \"{\"");
    EXPECT_EQ(error_of("a {\n {}\n}"), "test.conf:2: unexpected \"{\"");
}

TEST(ConfigSyntaxError, UnterminatedQuotedString) {
    EXPECT_EQ(error_of("a \"b"), "test.conf:1: unterminated quoted string");
    EXPECT_EQ(error_of("a;\nb 'x\n\n\ny;"), "test.conf:2: unterminated quoted string");
    EXPECT_EQ(error_of("a \"b\\\""), "test.conf:1: unterminated quoted string");
    EXPECT_EQ(error_of("a \"b\\"), "test.conf:1: unterminated quoted string");
    EXPECT_EQ(error_of("a 'b\";"), "test.conf:1: unterminated quoted string");
}

TEST(ConfigSyntaxError, UnexpectedCharacterAfterQuote) {
    EXPECT_EQ(error_of("a \"b\"c;"), "test.conf:1: unexpected \"c\"");
    EXPECT_EQ(error_of("a 'b'\"c\";"), "test.conf:1: unexpected \"\"\"");
    EXPECT_EQ(error_of("a \"b\"#c\n;"), "test.conf:1: unexpected \"#\"");
    EXPECT_EQ(error_of("a \"x\ny\"z;"), "test.conf:2: unexpected \"z\"");
    EXPECT_EQ(error_of("\"name\"x;"), "test.conf:1: unexpected \"x\"");
}

TEST(ConfigSyntaxError, InvalidVariableName) {
    EXPECT_EQ(error_of("set $a ${b"), "test.conf:1: invalid variable name");
    EXPECT_EQ(error_of("set $a ${b c};"), "test.conf:1: invalid variable name");
    EXPECT_EQ(error_of("a;\nset $a x${};"), "test.conf:2: invalid variable name");
    EXPECT_EQ(error_of("set $a ${b;c};"), "test.conf:1: invalid variable name");
    EXPECT_EQ(error_of("set $a ${b\nc};"), "test.conf:1: invalid variable name");
    EXPECT_EQ(error_of("set $a \"${b c}\";"), "test.conf:1: invalid variable name");
    EXPECT_EQ(error_of("set $a '${b';"), "test.conf:1: invalid variable name");
    EXPECT_EQ(error_of("\n\"${b\nc}\";"), "test.conf:2: invalid variable name");
}

TEST(ConfigSyntaxError, IncludeNotAllowed) {
    EXPECT_EQ(error_of("a;\ninclude x.conf;"),
              "test.conf:2: \"include\" directive is not allowed here");
}

TEST(ConfigSyntaxError, EmptySourceNameGivesMessageOnly) {
    EXPECT_EQ(error_of("}", ""), "unexpected \"}\"");
}

TEST(ConfigSyntaxError, ErrorCarriesFileAndLine) {
    ParseOptions options;
    try {
        parse_string("a;\n\n;", "command line", options);
        FAIL() << "no error";
    } catch (const ConfigError& e) {
        EXPECT_EQ(e.file(), "command line");
        EXPECT_EQ(e.line(), 3);
        EXPECT_EQ(e.message(), "unexpected \";\"");
    }
}

TEST(ConfigSyntaxError, NestingLimit) {
    std::string ok;
    for (int i = 0; i < 64; ++i) ok += "a{";
    ok += std::string(64, '}');
    EXPECT_NO_THROW(parse(ok));

    std::string deep;
    for (int i = 0; i < 65; ++i) deep += "a{";
    deep += std::string(65, '}');
    EXPECT_EQ(error_of(deep), "test.conf:1: blocks nested too deeply (more than 64 levels)");

    std::string huge;
    for (int i = 0; i < 100000; ++i) huge += "a{";
    EXPECT_EQ(error_of(huge), "test.conf:1: blocks nested too deeply (more than 64 levels)");
}

// --- Includes (files) --------------------------------------------------------------------------

class ConfigInclude : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/tollgate-conf-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    // Writes `content` to dir_/rel (creating folders) and returns the full path.
    std::string write(const std::string& rel, const std::string& content) {
        std::filesystem::path p = std::filesystem::path(dir_) / rel;
        std::filesystem::create_directories(p.parent_path());
        std::ofstream(p, std::ios::binary) << content;
        return p.string();
    }

    ParseOptions options() const {
        ParseOptions o;
        o.include_base = dir_;
        return o;
    }

    // Returns what() of the ConfigError thrown by parse_file(dir_/rel), or "<no error>".
    std::string file_error(const std::string& rel, const ParseOptions& o) {
        try {
            parse_file(dir_ + "/" + rel, o);
        } catch (const ConfigError& e) {
            return e.what();
        }
        return "<no error>";
    }

    std::string dir_;
};

TEST_F(ConfigInclude, ParseFileWithoutIncludes) {
    std::string main = write("main.conf", "a 1;\nb {\n  c;\n}\n");
    ParsedConfig c = parse_file(main, options());
    ASSERT_TRUE(c.root.file);
    EXPECT_EQ(*c.root.file, main);
    EXPECT_EQ(c.root.line, 0);
    EXPECT_TRUE(c.root.is_block);
    ASSERT_EQ(c.root.children.size(), 2u);
    EXPECT_EQ(*c.root.children[1].children.at(0).file, main);
    EXPECT_EQ(c.root.children[1].children.at(0).line, 3);
    ASSERT_EQ(c.files.size(), 1u);
    EXPECT_EQ(c.files[0].path, main);
    EXPECT_EQ(c.files[0].content, "a 1;\nb {\n  c;\n}\n");
}

TEST_F(ConfigInclude, ExpandsInPlaceWithOwnFileAndLine) {
    std::string main = write("main.conf", "a;\nhttp {\n  include mime.types;\n  z;\n}\nlast;\n");
    std::string mime = write("mime.types", "\n\ntypes {\n  text/html html;\n}\nx 1;\n");
    ParsedConfig c = parse_file(main, options());
    ASSERT_EQ(c.root.children.size(), 3u);
    const Node& http = c.root.children[1];
    ASSERT_EQ(http.children.size(), 3u);
    EXPECT_EQ(http.children[0].name, "types");
    EXPECT_EQ(*http.children[0].file, mime);
    EXPECT_EQ(http.children[0].line, 3);
    EXPECT_EQ(http.children[0].children.at(0).line, 4);
    EXPECT_EQ(*http.children[0].children.at(0).file, mime);
    EXPECT_EQ(http.children[1].name, "x");
    EXPECT_EQ(http.children[1].line, 6);
    EXPECT_EQ(http.children[2].name, "z");
    EXPECT_EQ(*http.children[2].file, main);
    EXPECT_EQ(http.children[2].line, 4);
    EXPECT_EQ(c.root.children[2].name, "last");
    ASSERT_EQ(c.files.size(), 2u);
    EXPECT_EQ(c.files[0].path, main);
    EXPECT_EQ(c.files[1].path, mime);
    EXPECT_EQ(c.files[1].content, "\n\ntypes {\n  text/html html;\n}\nx 1;\n");
}

TEST_F(ConfigInclude, TopLevelIncludeAndNested) {
    std::string main = write("main.conf", "include a.conf;\nm;\n");
    std::string a = write("a.conf", "a1;\ninclude sub/b.conf;\na2;\n");
    std::string b = write("sub/b.conf", "b1;\n");
    ParsedConfig c = parse_file(main, options());
    std::vector<std::string> names;
    for (const Node& n : c.root.children) names.push_back(n.name);
    EXPECT_EQ(names, (Strings{"a1", "b1", "a2", "m"}));
    EXPECT_EQ(*c.root.children[1].file, b);
    ASSERT_EQ(c.files.size(), 3u);
    EXPECT_EQ(c.files[1].path, a);
    EXPECT_EQ(c.files[2].path, b);
}

TEST_F(ConfigInclude, AbsolutePathIgnoresBase) {
    std::string abs = write("elsewhere/x.conf", "x;\n");
    std::string main = write("main.conf", "include \"" + abs + "\";\n");
    ParseOptions o = options();
    o.include_base = "/nonexistent-base";
    ParsedConfig c = parse_file(main, o);
    ASSERT_EQ(c.root.children.size(), 1u);
    EXPECT_EQ(*c.root.children[0].file, abs);
}

TEST_F(ConfigInclude, BaseWithTrailingSlash) {
    std::string main = write("main.conf", "include x.conf;\n");
    write("x.conf", "x;\n");
    ParseOptions o = options();
    o.include_base = dir_ + "/";
    ParsedConfig c = parse_file(main, o);
    EXPECT_EQ(*c.root.children.at(0).file, dir_ + "/x.conf");
}

TEST_F(ConfigInclude, DefaultBaseIsMainFileFolder) {
    std::string main = write("etc/main.conf", "include x.conf;\n");
    std::string x = write("etc/x.conf", "x;\n");
    ParsedConfig c = parse_file(main, ParseOptions{});
    EXPECT_EQ(*c.root.children.at(0).file, x);
}

TEST_F(ConfigInclude, GlobSortedMatches) {
    std::string main = write("main.conf", "http {\n  include conf.d/*.conf;\n}\n");
    write("conf.d/b.conf", "b;\n");
    write("conf.d/a.conf", "a;\n");
    write("conf.d/c.conf", "c;\n");
    write("conf.d/ignored.txt", "}}}\n");
    ParsedConfig c = parse_file(main, options());
    const Node& http = c.root.children.at(0);
    std::vector<std::string> names;
    for (const Node& n : http.children) names.push_back(n.name);
    EXPECT_EQ(names, (Strings{"a", "b", "c"}));
    ASSERT_EQ(c.files.size(), 4u);
    EXPECT_EQ(c.files[1].path, dir_ + "/conf.d/a.conf");
    EXPECT_EQ(c.files[3].path, dir_ + "/conf.d/c.conf");
}

TEST_F(ConfigInclude, GlobWithoutMatchesIsFine) {
    std::string main = write("main.conf", "include conf.d/*.conf;\ninclude none/x?.conf;\na;\n");
    ParsedConfig c = parse_file(main, options());
    ASSERT_EQ(c.root.children.size(), 1u);
    EXPECT_EQ(c.files.size(), 1u);
}

TEST_F(ConfigInclude, MissingPlainFileIsError) {
    write("main.conf", "a;\ninclude missing.conf;\n");
    EXPECT_EQ(file_error("main.conf", options()),
              dir_ + "/main.conf:2: open() \"" + dir_ +
                  "/missing.conf\" failed (No such file or directory)");
}

TEST_F(ConfigInclude, IncludeOfDirectoryIsError) {
    write("main.conf", "include sub;\n");
    write("sub/x.conf", "x;\n");
    EXPECT_EQ(file_error("main.conf", options()),
              dir_ + "/main.conf:1: open() \"" + dir_ + "/sub\" failed (Is a directory)");
}

TEST_F(ConfigInclude, PathThroughFileIsError) {
    write("main.conf", "include a.conf/x.conf;\n");
    write("a.conf", "");
    EXPECT_EQ(file_error("main.conf", options()), dir_ + "/main.conf:1: open() \"" + dir_ +
                                                      "/a.conf/x.conf\" failed (Not a directory)");
}

TEST_F(ConfigInclude, NonRegularFile) {
    ParsedConfig c = parse_file("/dev/null", options());
    EXPECT_TRUE(c.root.children.empty());
    ASSERT_EQ(c.files.size(), 1u);
    EXPECT_EQ(c.files[0].path, "/dev/null");
    EXPECT_EQ(c.files[0].content, "");
}

TEST_F(ConfigInclude, MissingMainFile) {
    std::string path = dir_ + "/nope.conf";
    try {
        parse_file(path, options());
        FAIL() << "no error";
    } catch (const ConfigError& e) {
        EXPECT_EQ(std::string(e.what()),
                  path + ": open() \"" + path + "\" failed (No such file or directory)");
        EXPECT_EQ(e.file(), path);
        EXPECT_EQ(e.line(), 0);
    }
}

TEST_F(ConfigInclude, MainFileIsDirectory) {
    EXPECT_EQ(file_error("", options()),
              dir_ + "/: open() \"" + dir_ + "/\" failed (Is a directory)");
}

TEST_F(ConfigInclude, FileTooLarge) {
    write("main.conf", "a 123456789012345678901234567890;\n");  // 34 bytes
    write("small.conf", "include main.conf;\n");                // 19 bytes
    ParseOptions o = options();
    o.max_file_size = 20;
    std::string main = dir_ + "/main.conf";
    EXPECT_EQ(file_error("main.conf", o),
              main + ": open() \"" + main + "\" failed (File too large)");
    EXPECT_EQ(file_error("small.conf", o),
              dir_ + "/small.conf:1: open() \"" + main + "\" failed (File too large)");
    o.max_file_size = 34;
    EXPECT_EQ(file_error("main.conf", o), "<no error>");
}

TEST_F(ConfigInclude, UnreadableFile) {
    if (geteuid() == 0) GTEST_SKIP() << "root can read any file";
    std::string main = write("main.conf", "a;\n");
    chmod(main.c_str(), 0);
    EXPECT_EQ(file_error("main.conf", options()),
              main + ": open() \"" + main + "\" failed (Permission denied)");
}

TEST_F(ConfigInclude, WrongNumberOfArguments) {
    write("zero.conf", "a;\ninclude;\n");
    write("two.conf", "include a.conf b.conf;\n");
    write("a.conf", "");
    write("b.conf", "");
    EXPECT_EQ(file_error("zero.conf", options()),
              dir_ + "/zero.conf:2: invalid number of arguments in \"include\" directive");
    EXPECT_EQ(file_error("two.conf", options()),
              dir_ + "/two.conf:1: invalid number of arguments in \"include\" directive");
}

TEST_F(ConfigInclude, IncludeAsBlockIsError) {
    write("main.conf", "\ninclude a.conf { x; }\n");
    write("a.conf", "");
    EXPECT_EQ(file_error("main.conf", options()),
              dir_ + "/main.conf:2: directive \"include\" is not terminated by \";\"");
}

TEST_F(ConfigInclude, DisallowedInParseFile) {
    write("main.conf", "include a.conf;\n");
    write("a.conf", "");
    ParseOptions o = options();
    o.allow_include = false;
    EXPECT_EQ(file_error("main.conf", o),
              dir_ + "/main.conf:1: \"include\" directive is not allowed here");
}

TEST_F(ConfigInclude, RecursiveIncludeOfSelf) {
    write("main.conf", "a;\ninclude main.conf;\n");
    EXPECT_EQ(file_error("main.conf", options()),
              dir_ + "/main.conf:2: recursive include of \"" + dir_ + "/main.conf\"");
}

TEST_F(ConfigInclude, RecursiveIncludeLoop) {
    write("main.conf", "include a.conf;\n");
    write("a.conf", "include b.conf;\n");
    write("b.conf", "x;\n\ninclude a.conf;\n");
    EXPECT_EQ(file_error("main.conf", options()),
              dir_ + "/b.conf:3: recursive include of \"" + dir_ + "/a.conf\"");
}

TEST_F(ConfigInclude, RecursiveIncludeThroughGlob) {
    write("main.conf", "include conf.d/*.conf;\n");
    write("conf.d/a.conf", "include conf.d/*.conf;\n");
    EXPECT_EQ(file_error("main.conf", options()),
              dir_ + "/conf.d/a.conf:1: recursive include of \"" + dir_ + "/conf.d/a.conf\"");
}

TEST_F(ConfigInclude, DepthLimit) {
    write("main.conf", "include 1.conf;\n");
    write("1.conf", "include 2.conf;\n");
    write("2.conf", "include 3.conf;\n");
    write("3.conf", "deep;\n");
    ParseOptions o = options();
    o.max_include_depth = 3;
    EXPECT_EQ(file_error("main.conf", o), "<no error>");
    o.max_include_depth = 2;
    EXPECT_EQ(file_error("main.conf", o),
              dir_ +
                  "/2.conf:1: includes nested too deeply (more than 2 levels), possible include "
                  "loop");
}

TEST_F(ConfigInclude, SameFileTwiceIsListedOnce) {
    std::string main = write("main.conf", "a { include x.conf; }\nb { include x.conf; }\n");
    write("x.conf", "x;\n");
    ParsedConfig c = parse_file(main, options());
    EXPECT_EQ(c.root.children.at(0).children.at(0).name, "x");
    EXPECT_EQ(c.root.children.at(1).children.at(0).name, "x");
    EXPECT_EQ(c.files.size(), 2u);
}

TEST_F(ConfigInclude, SyntaxErrorInIncludedFile) {
    write("main.conf", "http {\n  include bad.conf;\n}\n");
    write("bad.conf", "a;\n\nb \"x\"y;\n");
    EXPECT_EQ(file_error("main.conf", options()), dir_ + "/bad.conf:3: unexpected \"y\"");
}

TEST_F(ConfigInclude, IncludedFileMustBeBalanced) {
    write("close.conf", "a { include stray.conf; }\n");
    write("stray.conf", "b;\n}\n");
    EXPECT_EQ(file_error("close.conf", options()), dir_ + "/stray.conf:2: unexpected \"}\"");

    write("open.conf", "include unclosed.conf;\n}\n");
    write("unclosed.conf", "a {\n");
    EXPECT_EQ(file_error("open.conf", options()),
              dir_ + "/unclosed.conf:2: unexpected end of file, expecting \"}\"");
}

TEST_F(ConfigInclude, ParseStringWithInclude) {
    std::string x = write("x.conf", "x 1;\n");
    ParsedConfig c = parse_string("a;\ninclude x.conf;", "command line", options());
    ASSERT_EQ(c.root.children.size(), 2u);
    EXPECT_EQ(*c.root.children[0].file, "command line");
    EXPECT_EQ(*c.root.children[1].file, x);
    ASSERT_EQ(c.files.size(), 1u);
    EXPECT_EQ(c.files[0].path, x);
}

TEST_F(ConfigInclude, ParseStringMissingInclude) {
    ParseOptions o = options();
    try {
        parse_string("\ninclude nope.conf;", "command line", o);
        FAIL() << "no error";
    } catch (const ConfigError& e) {
        EXPECT_EQ(std::string(e.what()), "command line:2: open() \"" + dir_ +
                                             "/nope.conf\" failed (No such file or directory)");
    }
}

}  // namespace
}  // namespace tollgate::conf
