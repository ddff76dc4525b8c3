// PCRE2 regular expressions, JIT-compiled at load. Used by location ~, server_name ~ and later map.
#pragma once

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
    const std::string& pattern() const { return pattern_; }

  private:
    Regex() = default;
    void* code_ = nullptr;  // pcre2_code*, kept opaque so pcre2.h stays out of headers
    std::string pattern_;
};

}  // namespace tollgate
