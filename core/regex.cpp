#define PCRE2_CODE_UNIT_WIDTH 8
#include "core/regex.hpp"

#include <pcre2.h>

#include <cstdint>

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

bool Regex::match(std::string_view subject, size_t* ovector, size_t pairs) const {
    pcre2_match_data* md = thread_match_data();
    int rc =
        pcre2_match(static_cast<pcre2_code*>(code_), reinterpret_cast<PCRE2_SPTR>(subject.data()),
                    subject.size(), 0, 0, md, nullptr);
    if (rc < 0) return false;
    // rc == 0 means the match data was too small for every group; it holds what it could.
    size_t set = rc == 0 ? pcre2_get_ovector_count(md) : static_cast<size_t>(rc);
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    for (size_t i = 0; i < pairs; ++i) {
        bool taken = i < set && ov[2 * i] != PCRE2_UNSET;
        ovector[2 * i] = taken ? ov[2 * i] : SIZE_MAX;
        ovector[2 * i + 1] = taken ? ov[2 * i + 1] : SIZE_MAX;
    }
    return true;
}

int Regex::group_number(const std::string& name) const {
    int n = pcre2_substring_number_from_name(static_cast<pcre2_code*>(code_),
                                             reinterpret_cast<PCRE2_SPTR>(name.c_str()));
    return n > 0 ? n : -1;
}

}  // namespace tollgate
