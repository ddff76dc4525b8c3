// libFuzzer target for the configuration parser and value parsers.
//
// Properties checked beyond "no crash": only ConfigError escapes the parser; every node has a
// file and a line >= 1, lines never go backwards in document order; and printing the tree back
// (every token quoted and escaped) and parsing it again yields the same tree.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/config/syntax.hpp"
#include "core/config/values.hpp"

namespace {

using tollgate::conf::Arg;
using tollgate::conf::ConfigError;
using tollgate::conf::Node;
using tollgate::conf::ParsedConfig;
using tollgate::conf::ParseOptions;

void check(bool ok) {
    if (!ok) std::abort();
}

// out: receives `text` as a double-quoted token that lexes back to exactly `text`.
void append_quoted(std::string& out, const std::string& text) {
    out += '"';
    for (char c : text) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    out += '"';
}

// Appends the children of `block` to `out` as configuration text.
void print(const Node& block, std::string& out) {
    for (const Node& n : block.children) {
        append_quoted(out, n.name);
        for (const Arg& a : n.args) {
            out += ' ';
            append_quoted(out, a.value);
        }
        if (n.is_block) {
            out += " {\n";
            print(n, out);
            out += "}\n";
        } else {
            out += ";\n";
        }
    }
}

bool same(const Node& a, const Node& b) {
    if (a.name != b.name || a.is_block != b.is_block || a.args.size() != b.args.size() ||
        a.children.size() != b.children.size()) {
        return false;
    }
    for (size_t i = 0; i < a.args.size(); ++i) {
        if (a.args[i].value != b.args[i].value) return false;
    }
    for (size_t i = 0; i < a.children.size(); ++i) {
        if (!same(a.children[i], b.children[i])) return false;
    }
    return true;
}

// Checks node invariants and exercises the value parsers on every argument.
void walk(const Node& block, int& last_line) {
    for (const Node& n : block.children) {
        check(n.file != nullptr && *n.file == "fuzz.conf");
        check(n.line >= 1 && n.line >= last_line);
        last_line = n.line;
        check(n.is_block || n.children.empty());
        for (const Arg& a : n.args) {
            (void)tollgate::conf::parse_size(a.value);
            (void)tollgate::conf::parse_time_ms(a.value);
            (void)tollgate::conf::parse_flag(a.value);
            (void)tollgate::conf::parse_int(a.value);
        }
        walk(n, last_line);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    (void)tollgate::conf::parse_size(text);
    (void)tollgate::conf::parse_time_ms(text);
    (void)tollgate::conf::parse_flag(text);
    (void)tollgate::conf::parse_int(text);

    ParseOptions options;
    options.allow_include = false;  // never touch the file system
    ParsedConfig parsed;
    try {
        parsed = tollgate::conf::parse_string(text, "fuzz.conf", options);
    } catch (const ConfigError& e) {
        check(e.file() == "fuzz.conf" && e.line() >= 1);
        return 0;
    }
    check(parsed.root.is_block && parsed.root.name.empty() && parsed.files.empty());
    int last_line = 1;
    walk(parsed.root, last_line);

    std::string printed;
    print(parsed.root, printed);
    ParsedConfig again = tollgate::conf::parse_string(printed, "fuzz.conf", options);
    check(same(parsed.root, again.root));
    return 0;
}
