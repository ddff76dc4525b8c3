#define PCRE2_CODE_UNIT_WIDTH 8
#include "core/regex.hpp"

#include <pcre2.h>

namespace tollgate {

namespace {
// One match-data block per thread, reused by every match: no allocation per request.
pcre2_match_data* thread_match_data() {
    thread_local std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> data(
        pcre2_match_data_create(32, nullptr), pcre2_match_data_free);
    return data.get();
}
}  // namespace

std::shared_ptr<const Regex> Regex::compile(std::string_view pattern, bool caseless,
                                            std::string& error) {
    int code = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   caseless ? PCRE2_CASELESS : 0, &code, &offset, nullptr);
    if (re == nullptr) {
        PCRE2_UCHAR buf[256];
        pcre2_get_error_message(code, buf, sizeof(buf));
        error = reinterpret_cast<const char*>(buf);
        error += " at offset " + std::to_string(offset);
        return nullptr;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);  // best effort: falls back to the interpreter
    auto out = std::shared_ptr<Regex>(new Regex());
    out->code_ = re;
    out->pattern_ = std::string(pattern);
    return out;
}

Regex::~Regex() {
    pcre2_code_free(static_cast<pcre2_code*>(code_));
}

bool Regex::matches(std::string_view subject) const {
    int rc =
        pcre2_match(static_cast<pcre2_code*>(code_), reinterpret_cast<PCRE2_SPTR>(subject.data()),
                    subject.size(), 0, 0, thread_match_data(), nullptr);
    return rc >= 0;
}

}  // namespace tollgate
