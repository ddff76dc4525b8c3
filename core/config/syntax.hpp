#pragma once

// The configuration language (nginx grammar) as a syntax tree. A directive is `name arg ... ;`
// or `name arg ... { directives }`; `include PATTERN;` is expanded in place while parsing.
// Every problem is reported by throwing ConfigError.
//
// Lexical rules: tokens are separated by space, tab, CR, LF; ';', '{' and '}' end an unquoted
// token; '#' where a token would start begins a comment to the end of the line. A token starting
// with '"' or '\'' runs to the matching quote and must be followed by whitespace, ';', '{', '}' or
// the end. In quoted and unquoted tokens alike (as nginx), \" \' \\ become " ' \ and \n \r \t
// become LF CR TAB; any other backslash pair is kept as written ("\.php$" stays "\.php$"). In an
// unquoted token a backslash also stops the next character from ending the token. "${name}"
// (in any token) must close its brace and contain no whitespace, quote, backslash, ';' or '{';
// in an unquoted token its '{' and '}' do not end the token.
//
// Blocks may nest at most 64 levels deep (counted across included files).

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/config/error.hpp"

namespace tollgate::conf {

struct Arg {
    std::string value;    // unescaped text: quotes removed, escapes applied; "$var"/"${var}" kept
    bool quoted = false;  // was written in '...' or "..."
};

struct Node {
    std::string name;  // directive name
    std::vector<Arg> args;
    bool is_block = false;                    // ended with { ... } rather than ;
    std::vector<Node> children;               // block contents
    std::shared_ptr<const std::string> file;  // file the directive was read from
    int line = 0;                             // line of the directive name

    // message: what is wrong with this directive. Never returns: throws
    // ConfigError(*file, line, message) (file "" when unset).
    [[noreturn]] void fail(const std::string& message) const;
};

// One configuration file as read, for `tollgate -T`.
struct SourceFile {
    std::string path;
    std::string content;
};

struct ParseOptions {
    // Folder that relative include paths resolve against (the main config file's folder). When
    // empty, parse_file uses the main file's folder and parse_string the current directory.
    std::string include_base;
    bool allow_include = true;  // the fuzzer sets false: then `include` is an error
    int max_include_depth = 16;
    size_t max_file_size = 16 << 20;
};

struct ParsedConfig {
    Node root;                      // name "" (main context), is_block=true, children = top level
    std::vector<SourceFile> files;  // every file read, main file first, in the order read (each
                                    // path once); parse_string's own text is not listed
};

// path: main configuration file; options: include handling and limits. Reads `path` and every
// file it includes and returns the tree (root.file = path, root.line = 0) and the files read.
// Throws ConfigError on any problem.
ParsedConfig parse_file(const std::string& path, const ParseOptions& options);

// text: configuration text that did not come from a file (the -g option, tests, fuzzing); name:
// used as FILE in errors and as every top-level node's file; options: as for parse_file.
// Returns the tree; `files` lists only files pulled in by include. Throws ConfigError.
ParsedConfig parse_string(std::string_view text, const std::string& name,
                          const ParseOptions& options);

}  // namespace tollgate::conf
