#include "modules/map/map.hpp"

#include <memory_resource>

#include "core/http/request.hpp"

namespace tollgate::map {

namespace {

char lower(char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

}  // namespace

size_t CaseInsensitiveHash::operator()(std::string_view s) const {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (char c : s) {
        h ^= static_cast<unsigned char>(lower(c));
        h *= 1099511628211ull;
    }
    return static_cast<size_t>(h);
}

bool CaseInsensitiveEqual::operator()(std::string_view a, std::string_view b) const {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        if (lower(a[i]) != lower(b[i])) return false;
    }
    return true;
}

MapValue MapValue::compile(std::string_view text, const VariableRegistry& registry,
                           const Regex* regex, const conf::Node& where) {
    MapValue v;
    v.source_ = std::string(text);
    std::string literal;
    auto flush = [&] {
        if (literal.empty()) return;
        Segment s;
        s.literal = std::move(literal);
        v.segments_.push_back(std::move(s));
        literal.clear();
    };
    size_t i = 0;
    while (i < text.size()) {
        if (text[i] != '$') {
            literal += text[i++];
            continue;
        }
        size_t start = i + 1;
        // "$1".."$9": one digit, as nginx reads positional captures.
        if (start < text.size() && text[start] >= '1' && text[start] <= '9') {
            flush();
            Segment s;
            s.kind = Kind::Capture;
            s.group = text[start] - '0';
            v.segments_.push_back(std::move(s));
            i = start + 1;
            continue;
        }
        std::string_view name;
        if (start < text.size() && text[start] == '{') {
            size_t close = text.find('}', start);
            if (close == std::string_view::npos)
                where.fail("the closing bracket in \"" + std::string(text) + "\" is missing");
            name = text.substr(start + 1, close - start - 1);
            i = close + 1;
        } else {
            size_t end = start;
            while (end < text.size() && is_name_char(text[end])) ++end;
            name = text.substr(start, end - start);
            i = end;
        }
        if (name.empty()) where.fail("invalid variable name in \"" + std::string(text) + "\"");
        flush();
        Segment s;
        int group = regex != nullptr ? regex->group_number(std::string(name)) : -1;
        if (group > 0) {
            s.kind = Kind::Capture;
            s.group = group;
        } else {
            auto ref = registry.find(name);
            if (!ref) where.fail("unknown \"" + std::string(name) + "\" variable");
            s.kind = Kind::Variable;
            s.ref = std::move(*ref);
        }
        v.segments_.push_back(std::move(s));
    }
    flush();
    return v;
}

std::string_view MapValue::evaluate(http::Request& r, std::string_view subject,
                                    const size_t* ovector) const {
    if (ovector != nullptr && ovector[0] == SIZE_MAX) ovector = nullptr;  // no regex matched
    auto piece = [&](const Segment& s) -> std::string_view {
        switch (s.kind) {
            case Kind::Literal:
                return s.literal;
            case Kind::Variable:
                return evaluate_variable(r, s.ref);
            case Kind::Capture: {
                if (ovector == nullptr || static_cast<size_t>(s.group) >= kMaxCaptures) return {};
                size_t from = ovector[2 * s.group];
                size_t to = ovector[2 * s.group + 1];
                if (from == SIZE_MAX || to > subject.size() || from > to) return {};
                return subject.substr(from, to - from);
            }
        }
        return {};
    };
    if (segments_.empty()) return {};
    if (segments_.size() == 1) return piece(segments_[0]);
    std::pmr::string out(r.arena);
    for (const Segment& s : segments_) out += piece(s);
    return r.copy(out);
}

std::unique_ptr<Map> Map::compile(const conf::Node& node, const VariableRegistry& registry) {
    auto m = std::make_unique<Map>();
    const std::string& var = node.args.at(1).value;
    if (var.size() < 2 || var[0] != '$') node.fail("invalid variable name \"" + var + "\"");
    m->variable_ = var.substr(1);
    for (char c : m->variable_) {
        if (!is_name_char(c)) node.fail("invalid variable name \"" + var + "\"");
    }
    m->source_ = ComplexValue::compile(node.args.at(0).value, registry, node);
    for (const conf::Node& line : node.children) m->add_line(line, registry);
    return m;
}

void Map::add_line(const conf::Node& line, const VariableRegistry& registry) {
    if (line.is_block) line.fail("unexpected \"{\"");
    if (line.args.empty() && line.name == "hostnames") {
        hostnames_ = true;
        return;
    }
    if (line.args.empty() && line.name == "volatile") {
        volatile_ = true;
        return;
    }
    if (line.args.size() != 1) line.fail("invalid number of the map parameters");
    std::string_view key = line.name;
    const std::string& text = line.args[0].value;

    if (key == "default") {
        if (default_ >= 0) line.fail("duplicate default map parameter");
        values_.push_back(MapValue::compile(text, registry, nullptr, line));
        default_ = static_cast<int64_t>(values_.size() - 1);
        return;
    }
    if (!key.empty() && key[0] == '~') {
        bool caseless = key.size() > 1 && key[1] == '*';
        std::string_view pattern = key.substr(caseless ? 2 : 1);
        std::string error;
        auto re = Regex::compile(pattern, caseless, error);
        if (!re) line.fail("invalid regex \"" + std::string(pattern) + "\": " + error);
        values_.push_back(MapValue::compile(text, registry, re.get(), line));
        regexes_.push_back(RegexKey{std::move(re), static_cast<uint32_t>(values_.size() - 1)});
        return;
    }
    if (!key.empty() && key[0] == '\\') key.remove_prefix(1);  // "\default", "\~not-a-regex"
    values_.push_back(MapValue::compile(text, registry, nullptr, line));
    add_key(line, std::string(key), static_cast<uint32_t>(values_.size() - 1));
}

void Map::note_labels(const conf::Node& line, std::string_view name, size_t& most) {
    size_t labels = 1;
    for (char c : name) labels += c == '.' ? 1 : 0;
    if (labels > kMaxLabels) line.fail("too many labels in \"" + line.name + "\"");
    if (labels > most) most = labels;
}

void Map::add_key(const conf::Node& line, std::string key, uint32_t value) {
    auto conflict = [&] { line.fail("conflicting parameter \"" + key + "\""); };
    if (!hostnames_) {
        if (!exact_.emplace(key, value).second) conflict();
        return;
    }
    // As nginx's wildcard keys: at most one '*', no "..", and a mask only at a dot border.
    size_t stars = 0;
    for (size_t i = 0; i < key.size(); ++i) {
        if (key[i] == '*') ++stars;
        if (stars > 1 || key[i] == '\0' ||
            (key[i] == '.' && i + 1 < key.size() && key[i + 1] == '.')) {
            line.fail("invalid hostname or wildcard \"" + key + "\"");
        }
    }
    auto invalid = [&] { line.fail("invalid hostname or wildcard \"" + key + "\""); };
    if (key.size() > 1 && key[0] == '.') {
        // ".example.com": example.com itself and every name under it.
        std::string name = key.substr(1);
        if (name.find('*') != std::string::npos) invalid();
        if (exact_.count(name) != 0 || head_.count(name) != 0) conflict();
        note_labels(line, name, head_labels_);
        exact_.emplace(name, value);
        head_.emplace(std::move(name), value);
        return;
    }
    if (key.size() > 2 && key[0] == '*' && key[1] == '.') {
        std::string name = key.substr(2);
        note_labels(line, name, head_labels_);
        if (!head_.emplace(std::move(name), value).second) conflict();
        return;
    }
    if (key.size() > 2 && key[key.size() - 2] == '.' && key.back() == '*') {
        std::string name = key.substr(0, key.size() - 2);
        note_labels(line, name, tail_labels_);
        if (!tail_.emplace(std::move(name), value).second) conflict();
        return;
    }
    if (stars != 0) invalid();
    if (!exact_.emplace(key, value).second) conflict();
}

const MapValue* Map::find(std::string_view key, size_t* ovector, std::string_view& subject) const {
    ovector[0] = SIZE_MAX;
    ovector[1] = SIZE_MAX;
    if (hostnames_ && !key.empty() && key.back() == '.') key.remove_suffix(1);
    subject = key;
    if (!exact_.empty()) {
        auto it = exact_.find(key);
        if (it != exact_.end()) return &values_[it->second];
    }
    if (hostnames_) {
        // Only names with at most as many labels as the longest mask are looked up, so a
        // source value with thousands of dots costs one scan, not one hash per dot.
        size_t dots[kMaxLabels];
        if (!head_.empty()) {
            // Suffixes after the last head_labels_ dots, the longest first.
            size_t n = 0;
            size_t p = key.rfind('.');
            while (p != std::string_view::npos && n < head_labels_) {
                dots[n++] = p;
                p = p > 0 ? key.rfind('.', p - 1) : std::string_view::npos;
            }
            while (n > 0) {
                auto it = head_.find(key.substr(dots[--n] + 1));
                if (it != head_.end()) return &values_[it->second];
            }
        }
        if (!tail_.empty()) {
            // Prefixes before the first tail_labels_ dots, the longest first; a mask needs at
            // least one character after its dot.
            size_t n = 0;
            for (size_t p = key.find('.'); p != std::string_view::npos && n < tail_labels_;
                 p = key.find('.', p + 1)) {
                dots[n++] = p;
            }
            while (n > 0) {
                size_t p = dots[--n];
                if (p == 0 || p + 1 >= key.size()) continue;
                auto it = tail_.find(key.substr(0, p));
                if (it != tail_.end()) return &values_[it->second];
            }
        }
    }
    if (!key.empty()) {  // as nginx, regexes never see an empty source value
        for (const RegexKey& rk : regexes_) {
            if (rk.regex->match(key, ovector, kMaxCaptures)) return &values_[rk.value];
        }
        ovector[0] = SIZE_MAX;
    }
    return default_ >= 0 ? &values_[static_cast<size_t>(default_)] : nullptr;
}

}  // namespace tollgate::map
