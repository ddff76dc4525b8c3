// PCRE2 regular expressions, JIT-compiled at load. Used by location ~, server_name ~ and map.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace tollgate {

class Regex {
  public:
    // Compiles `pattern`; on failure returns nullptr and sets `error` to PCRE2's message.
    static std::shared_ptr<const Regex> compile(std::string_view pattern, bool caseless,
                                                std::string& error);
    ~Regex();
    Regex(const Regex&) = delete;
    Regex& operator=(const Regex&) = delete;

    // True when `subject` matches anywhere (as nginx's location ~ does).
    bool matches(std::string_view subject) const;
    // As matches; on a match also stores group i's [start, end) offsets in ovector[2i] and
    // ovector[2i+1] for i < pairs (SIZE_MAX for both when group i took no part or is past the
    // groups a match records: at most 31).
    bool match(std::string_view subject, size_t* ovector, size_t pairs) const;
    // The group number of the named group `name`, or -1 when the pattern has no such group.
    int group_number(const std::string& name) const;
    const std::string& pattern() const { return pattern_; }

  private:
    Regex() = default;
    void* code_ = nullptr;  // pcre2_code*, kept opaque so pcre2.h stays out of headers
    std::string pattern_;
};

}  // namespace tollgate
