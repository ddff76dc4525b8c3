// One `map SOURCE $variable { ... }` block, compiled at load: its keys (exact strings, hostname
// masks, regexes), its values (text with variables and the matching regex's captures) and the
// lookup nginx's ngx_http_map_module does. The lookup (Map::find) needs no request, so it is
// unit-tested on its own; evaluating a value needs the request for its variables.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/config/syntax.hpp"
#include "core/regex.hpp"
#include "core/variables.hpp"

namespace tollgate {
namespace http {
class Request;
}

namespace map {

// Capture groups a regex key makes available to its value ($1..$9 and named groups): group 0
// (the whole match) plus 31, the most the shared match data records.
inline constexpr size_t kMaxCaptures = 32;

// A map's resulting value: literal text, variables and (for a regex key) capture references.
class MapValue {
  public:
    // Compiles `text`. `regex` is the key's regex (null for other keys): "$1".."$9" and the
    // names of its named groups refer to its captures. Throws conf::ConfigError at `where` for
    // an unknown variable or a bad reference.
    static MapValue compile(std::string_view text, const VariableRegistry& registry,
                            const Regex* regex, const conf::Node& where);

    // The value for request `r`; `subject` and `ovector` are the matched source value and
    // the group offsets Regex::match stored (null when no regex matched: captures are then
    // empty). Allocated in the request's arena unless the value is a plain literal.
    std::string_view evaluate(http::Request& r, std::string_view subject,
                              const size_t* ovector) const;

    bool is_literal() const {
        return segments_.size() <= 1 && (segments_.empty() || segments_[0].kind == Kind::Literal);
    }
    // The value as written in the config.
    const std::string& source() const { return source_; }

  private:
    enum class Kind : uint8_t { Literal, Variable, Capture };
    struct Segment {
        Kind kind = Kind::Literal;
        std::string literal;
        VariableRef ref;
        int group = 0;
    };
    std::vector<Segment> segments_;
    std::string source_;
};

// ASCII case-insensitive hashing and comparison, so lookups need no lower-cased copy.
struct CaseInsensitiveHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const;
};
struct CaseInsensitiveEqual {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const;
};

class Map {
  public:
    // Compiles the block of `map SOURCE $variable { ... }` (`node`: the map directive, whose
    // children are the block's lines). Variables in SOURCE and in values must already be
    // defined in `registry`. Throws conf::ConfigError ("FILE:LINE: reason") on a bad line.
    static std::unique_ptr<Map> compile(const conf::Node& node, const VariableRegistry& registry);

    // The value for source value `key` in nginx's order: exact string (ignoring case), then
    // the longest leading mask (*.example.com, .example.com), then the longest trailing mask
    // (www.example.*), then the first matching regex, then `default` (null when there is
    // none: the result is then ""). Masks apply to `hostnames` maps only, which also drop one
    // trailing dot from `key`. When a regex matched, `ovector` (kMaxCaptures pairs) receives its
    // captures and `subject` the string they index; otherwise ovector[0] is SIZE_MAX.
    const MapValue* find(std::string_view key, size_t* ovector, std::string_view& subject) const;

    const ComplexValue& source() const { return source_; }
    const std::string& variable() const { return variable_; }  // without the '$'
    bool is_volatile() const { return volatile_; }
    bool hostnames() const { return hostnames_; }

  private:
    using Table = std::unordered_map<std::string, uint32_t, CaseInsensitiveHash,
                                     CaseInsensitiveEqual>;  // key -> index into values_
    struct RegexKey {
        std::shared_ptr<const Regex> regex;
        uint32_t value;
    };
    void add_line(const conf::Node& line, const VariableRegistry& registry);
    void add_key(const conf::Node& line, std::string key, uint32_t value);
    // Raises `most` to the number of labels in mask name `name`.
    static void note_labels(const conf::Node& line, std::string_view name, size_t& most);
    static constexpr size_t kMaxLabels = 128;  // per hostname mask (a DNS name has at most 127)

    ComplexValue source_;
    std::string variable_;
    bool hostnames_ = false;
    bool volatile_ = false;
    std::vector<MapValue> values_;
    int64_t default_ = -1;  // index into values_
    Table exact_;
    Table head_;              // "*.example.com" and ".example.com", keyed "example.com"
    Table tail_;              // "www.example.*", keyed "www.example"
    size_t head_labels_ = 0;  // the most labels in a head_ / tail_ key
    size_t tail_labels_ = 0;
    std::vector<RegexKey> regexes_;
};

}  // namespace map
}  // namespace tollgate
