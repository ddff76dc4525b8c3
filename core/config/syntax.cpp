#include "core/config/syntax.hpp"

#include <fcntl.h>
#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <optional>
#include <system_error>
#include <utility>

namespace tollgate::conf {

void Node::fail(const std::string& message) const {
    throw ConfigError(file ? *file : std::string(), line, message);
}

namespace {

// Blocks may nest this deep (counted across included files); keeps recursion bounded.
constexpr int kMaxBlockDepth = 64;

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

// c: a character inside "${...}". Returns whether it may be part of the variable name there.
bool is_variable_char(char c) {
    return !is_space(c) && c != ';' && c != '{' && c != '}' && c != '"' && c != '\'' && c != '\\';
}

// c: the character after a backslash. Returns what the pair stands for, or nullopt when the
// backslash is kept (as in regexes: "\." stays "\.").
std::optional<char> unescape(char c) {
    switch (c) {
        case '"':
        case '\'':
        case '\\':
            return c;
        case 'n':
            return '\n';
        case 'r':
            return '\r';
        case 't':
            return '\t';
        default:
            return std::nullopt;
    }
}

enum class TokenKind { Word, Semicolon, OpenBrace, CloseBrace, End };

struct Token {
    TokenKind kind = TokenKind::End;
    std::string value;  // Word only: unescaped text
    bool quoted = false;
    int line = 0;  // line the token starts on
};

// Splits configuration text into tokens, tracking line numbers.
class Lexer {
  public:
    // text: the configuration text (must outlive the lexer); file: name used in errors.
    Lexer(std::string_view text, const std::string& file) : text_(text), file_(file) {}

    // Returns the next token (End at end of text). Throws ConfigError on a lexical error.
    Token next() {
        skip_blanks();
        Token token;
        token.line = line_;
        if (at_end()) return token;
        switch (text_[pos_]) {
            case ';':
                ++pos_;
                token.kind = TokenKind::Semicolon;
                return token;
            case '{':
                ++pos_;
                token.kind = TokenKind::OpenBrace;
                return token;
            case '}':
                ++pos_;
                token.kind = TokenKind::CloseBrace;
                return token;
            case '"':
            case '\'':
                read_quoted(token);
                return token;
            default:
                read_bare(token);
                return token;
        }
    }

    // line: where the error is; message: what is wrong. Never returns: throws ConfigError.
    [[noreturn]] void fail(int line, const std::string& message) const {
        throw ConfigError(file_, line, message);
    }

  private:
    bool at_end() const { return pos_ >= text_.size(); }

    // Skips whitespace and comments ('#' where a token would start, up to the end of the line).
    void skip_blanks() {
        while (!at_end()) {
            char c = text_[pos_];
            if (c == '#') {
                while (!at_end() && text_[pos_] != '\n') ++pos_;
            } else if (is_space(c)) {
                if (c == '\n') ++line_;
                ++pos_;
            } else {
                break;
            }
        }
    }

    // value: text being built; c: the character after a backslash (already consumed). Appends
    // what the escape pair stands for.
    void append_escape(std::string& value, char c) {
        if (std::optional<char> plain = unescape(c)) {
            value += *plain;
            return;
        }
        value += '\\';
        value += c;
        if (c == '\n') ++line_;
    }

    // token: receives a quoted word; pos_ is at the opening quote.
    void read_quoted(Token& token) {
        const char quote = text_[pos_++];
        token.kind = TokenKind::Word;
        token.quoted = true;
        for (;;) {
            if (at_end()) fail(token.line, "unterminated quoted string");
            char c = text_[pos_++];
            if (c == quote) break;
            if (c == '\\') {
                if (at_end()) fail(token.line, "unterminated quoted string");
                append_escape(token.value, text_[pos_++]);
                continue;
            }
            if (c == '\n') ++line_;
            token.value += c;
        }
        if (!at_end()) {
            char c = text_[pos_];
            if (!is_space(c) && c != ';' && c != '{' && c != '}') {
                fail(line_, std::string("unexpected \"") + c + "\"");
            }
        }
        check_variables(token.value, token.line);
    }

    // token: receives an unquoted word; pos_ is at its first character. The word ends before
    // whitespace, ';', '{' or '}' unless escaped by a backslash or inside "${...}".
    void read_bare(Token& token) {
        token.kind = TokenKind::Word;
        while (!at_end()) {
            char c = text_[pos_];
            if (is_space(c) || c == ';' || c == '{' || c == '}') break;
            ++pos_;
            if (c == '\\') {
                if (at_end()) {
                    token.value += c;
                    break;
                }
                append_escape(token.value, text_[pos_++]);
                continue;
            }
            token.value += c;
            if (c == '$' && !at_end() && text_[pos_] == '{') {
                token.value += text_[pos_++];
                for (;;) {
                    if (at_end() || !(is_variable_char(text_[pos_]) || text_[pos_] == '}')) {
                        fail(token.line, "invalid variable name");
                    }
                    char v = text_[pos_++];
                    token.value += v;
                    if (v == '}') break;
                }
            }
        }
        check_variables(token.value, token.line);
    }

    // value: a word's unescaped text; line: where the word starts. Throws unless every "${" in
    // value is followed by a non-empty name and "}".
    void check_variables(const std::string& value, int line) const {
        for (size_t i = 0; i + 1 < value.size(); ++i) {
            if (value[i] != '$' || value[i + 1] != '{') continue;
            size_t end = i + 2;
            while (end < value.size() && is_variable_char(value[end])) ++end;
            if (end == i + 2 || end >= value.size() || value[end] != '}') {
                fail(line, "invalid variable name");
            }
            i = end;
        }
    }

    std::string_view text_;
    const std::string& file_;
    size_t pos_ = 0;
    int line_ = 1;
};

// path: file to read; max_size: largest accepted size; content: receives the bytes. Returns 0 or
// the errno value describing the failure (EFBIG when larger than max_size).
int read_whole_file(const std::string& path, size_t max_size, std::string& content) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    struct stat st {};
    int err = 0;
    if (::fstat(fd, &st) != 0) {
        err = errno;
    } else if (S_ISDIR(st.st_mode)) {
        err = EISDIR;
    } else if (st.st_size > 0 && static_cast<uint64_t>(st.st_size) > max_size) {
        err = EFBIG;
    }
    content.clear();
    char buffer[16384];
    while (err == 0) {
        ssize_t n = ::read(fd, buffer, sizeof(buffer));
        if (n < 0) {
            if (errno == EINTR) continue;
            err = errno;
        } else if (n == 0) {
            break;
        } else if (content.size() + static_cast<size_t>(n) > max_size) {
            err = EFBIG;
        } else {
            content.append(buffer, static_cast<size_t>(n));
        }
    }
    ::close(fd);
    return err;
}

// path: file that failed; err: errno value. Returns `open() "PATH" failed (REASON)`.
std::string open_failed(const std::string& path, int err) {
    return "open() \"" + path + "\" failed (" + std::generic_category().message(err) + ")";
}

// path: an existing file. Returns its canonical path, or path itself if that cannot be found.
std::string canonical_path(const std::string& path) {
    char* resolved = ::realpath(path.c_str(), nullptr);
    if (resolved == nullptr) return path;
    std::string result(resolved);
    std::free(resolved);
    return result;
}

// Builds the tree for one parse_file/parse_string call, expanding includes.
class Parser {
  public:
    // options: limits and include settings; out: receives files read (and the tree via
    // parse_text's `out` argument).
    Parser(const ParseOptions& options, ParsedConfig& out) : options_(options), out_(out) {}

    // path, content: a file that was read. Records it in out_.files (once per path).
    void add_source(const std::string& path, const std::string& content) {
        for (const SourceFile& f : out_.files) {
            if (f.path == path) return;
        }
        out_.files.push_back(SourceFile{path, content});
    }

    // canonical: canonical path of the file about to be parsed, for recursion detection.
    void enter_file(std::string canonical) { chain_.push_back(std::move(canonical)); }
    void leave_file() { chain_.pop_back(); }

    // text: contents of one file; file: its name; out: receives its directives;
    // include_depth: how many includes led here (0 for the main file).
    void parse_text(std::string_view text, const std::shared_ptr<const std::string>& file,
                    std::vector<Node>& out, int include_depth) {
        Lexer lexer(text, *file);
        parse_directives(lexer, file, out, false, include_depth);
    }

  private:
    // Reads directives until end of text (nested false) or the closing '}' (nested true).
    void parse_directives(Lexer& lexer, const std::shared_ptr<const std::string>& file,
                          std::vector<Node>& out, bool nested, int include_depth) {
        for (;;) {
            Token token = lexer.next();
            switch (token.kind) {
                case TokenKind::End:
                    if (nested) lexer.fail(token.line, "unexpected end of file, expecting \"}\"");
                    return;
                case TokenKind::CloseBrace:
                    if (nested) return;
                    lexer.fail(token.line, "unexpected \"}\"");
                case TokenKind::Semicolon:
                    lexer.fail(token.line, "unexpected \";\"");
                case TokenKind::OpenBrace:
                    lexer.fail(token.line, "unexpected \"{\"");
                case TokenKind::Word:
                    break;
            }

            Node node;
            node.name = std::move(token.value);
            node.file = file;
            node.line = token.line;
            read_rest(lexer, node, include_depth);
            if (node.name == "include" && !node.is_block) {
                include(node, out, include_depth);
            } else {
                out.push_back(std::move(node));
            }
        }
    }

    // node: a directive whose name was just read. Reads its arguments and its ';' or block.
    void read_rest(Lexer& lexer, Node& node, int include_depth) {
        for (;;) {
            Token token = lexer.next();
            switch (token.kind) {
                case TokenKind::Word:
                    node.args.push_back(Arg{std::move(token.value), token.quoted});
                    break;
                case TokenKind::Semicolon:
                    return;
                case TokenKind::OpenBrace:
                    if (node.name == "include") {
                        node.fail("directive \"include\" is not terminated by \";\"");
                    }
                    if (block_depth_ >= kMaxBlockDepth) {
                        node.fail("blocks nested too deeply (more than " +
                                  std::to_string(kMaxBlockDepth) + " levels)");
                    }
                    node.is_block = true;
                    ++block_depth_;
                    parse_directives(lexer, node.file, node.children, true, include_depth);
                    --block_depth_;
                    return;
                case TokenKind::CloseBrace:
                    lexer.fail(token.line, "unexpected \"}\"");
                case TokenKind::End:
                    lexer.fail(token.line, "unexpected end of file, expecting \";\" or \"}\"");
            }
        }
    }

    // pattern: an include argument. Returns it resolved against options_.include_base.
    std::string resolve(const std::string& pattern) const {
        const std::string& base = options_.include_base;
        if (base.empty() || (!pattern.empty() && pattern.front() == '/')) return pattern;
        if (base.back() == '/') return base + pattern;
        return base + "/" + pattern;
    }

    // directive: an `include` directive; out: the list it appears in, which receives the
    // included directives in its place.
    void include(const Node& directive, std::vector<Node>& out, int include_depth) {
        if (!options_.allow_include) directive.fail("\"include\" directive is not allowed here");
        if (directive.args.size() != 1) {
            directive.fail("invalid number of arguments in \"include\" directive");
        }
        if (include_depth >= options_.max_include_depth) {
            directive.fail("includes nested too deeply (more than " +
                           std::to_string(options_.max_include_depth) +
                           " levels), possible include loop");
        }
        std::string path = resolve(directive.args[0].value);
        if (path.find_first_of("*?[") == std::string::npos) {
            include_file(path, directive, out, include_depth + 1);
            return;
        }

        glob_t matches{};
        int rc = ::glob(path.c_str(), 0, nullptr, &matches);
        std::vector<std::string> paths;
        if (rc == 0) {
            for (size_t i = 0; i < matches.gl_pathc; ++i) paths.emplace_back(matches.gl_pathv[i]);
        }
        ::globfree(&matches);
        if (rc != 0 && rc != GLOB_NOMATCH) directive.fail("glob() \"" + path + "\" failed");
        std::sort(paths.begin(), paths.end());
        for (const std::string& p : paths) include_file(p, directive, out, include_depth + 1);
    }

    // path: one file to include; directive: the include (for error locations); out: receives
    // its directives; include_depth: depth of the included file.
    void include_file(const std::string& path, const Node& directive, std::vector<Node>& out,
                      int include_depth) {
        std::string content;
        if (int err = read_whole_file(path, options_.max_file_size, content)) {
            directive.fail(open_failed(path, err));
        }
        std::string canonical = canonical_path(path);
        if (std::find(chain_.begin(), chain_.end(), canonical) != chain_.end()) {
            directive.fail("recursive include of \"" + path + "\"");
        }
        add_source(path, content);
        enter_file(std::move(canonical));
        parse_text(content, std::make_shared<const std::string>(path), out, include_depth);
        leave_file();
    }

    const ParseOptions& options_;
    ParsedConfig& out_;
    std::vector<std::string> chain_;  // canonical paths of the files being parsed, outermost first
    int block_depth_ = 0;
};

}  // namespace

ParsedConfig parse_file(const std::string& path, const ParseOptions& options) {
    ParseOptions opts = options;
    if (opts.include_base.empty()) {
        size_t slash = path.rfind('/');
        if (slash != std::string::npos) opts.include_base = path.substr(0, slash + 1);
    }

    std::string content;
    if (int err = read_whole_file(path, opts.max_file_size, content)) {
        throw ConfigError(path, 0, open_failed(path, err));
    }

    ParsedConfig result;
    auto file = std::make_shared<const std::string>(path);
    result.root.is_block = true;
    result.root.file = file;
    Parser parser(opts, result);
    parser.add_source(path, content);
    parser.enter_file(canonical_path(path));
    parser.parse_text(content, file, result.root.children, 0);
    parser.leave_file();
    return result;
}

ParsedConfig parse_string(std::string_view text, const std::string& name,
                          const ParseOptions& options) {
    ParsedConfig result;
    auto file = std::make_shared<const std::string>(name);
    result.root.is_block = true;
    result.root.file = file;
    Parser parser(options, result);
    parser.parse_text(text, file, result.root.children, 0);
    return result;
}

}  // namespace tollgate::conf
