#include "core/config/values.hpp"

#include <limits>

namespace tollgate::conf {

namespace {

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

// s: text to read. Returns the value of s if it is one or more decimal digits and fits uint64_t.
std::optional<uint64_t> parse_digits(std::string_view s) {
    if (s.empty()) return std::nullopt;
    uint64_t value = 0;
    for (char c : s) {
        if (!is_digit(c)) return std::nullopt;
        uint64_t digit = static_cast<uint64_t>(c - '0');
        if (value > (kMax - digit) / 10) return std::nullopt;
        value = value * 10 + digit;
    }
    return value;
}

// a, b: factors. Returns a * b, or nullopt if it overflows uint64_t.
std::optional<uint64_t> checked_mul(uint64_t a, uint64_t b) {
    if (b != 0 && a > kMax / b) return std::nullopt;
    return a * b;
}

// One unit of a duration: its length in milliseconds and its rank (larger unit, larger rank).
struct TimeUnit {
    uint64_t ms;
    int rank;
};

constexpr uint64_t kSecond = 1000;
constexpr uint64_t kMinute = 60 * kSecond;
constexpr uint64_t kHour = 60 * kMinute;
constexpr uint64_t kDay = 24 * kHour;

}  // namespace

std::optional<uint64_t> parse_size(std::string_view s) {
    if (s.empty()) return std::nullopt;
    uint64_t multiplier = 1;
    switch (s.back()) {
        case 'k':
        case 'K':
            multiplier = uint64_t{1} << 10;
            break;
        case 'm':
        case 'M':
            multiplier = uint64_t{1} << 20;
            break;
        case 'g':
        case 'G':
            multiplier = uint64_t{1} << 30;
            break;
        default:
            break;
    }
    if (multiplier != 1) s.remove_suffix(1);
    std::optional<uint64_t> number = parse_digits(s);
    if (!number) return std::nullopt;
    return checked_mul(*number, multiplier);
}

std::optional<uint64_t> parse_time_ms(std::string_view s) {
    if (s.empty()) return std::nullopt;
    uint64_t total = 0;
    int last_rank = 100;  // larger than every unit's rank
    size_t i = 0;
    while (i < s.size()) {
        size_t start = i;
        while (i < s.size() && is_digit(s[i])) ++i;
        std::optional<uint64_t> number = parse_digits(s.substr(start, i - start));
        if (!number) return std::nullopt;

        TimeUnit unit{kSecond, 2};  // no unit: seconds
        if (i < s.size()) {
            switch (s[i++]) {
                case 'y':
                    unit = {365 * kDay, 8};
                    break;
                case 'M':
                    unit = {30 * kDay, 7};
                    break;
                case 'w':
                    unit = {7 * kDay, 6};
                    break;
                case 'd':
                    unit = {kDay, 5};
                    break;
                case 'h':
                    unit = {kHour, 4};
                    break;
                case 'm':
                    if (i < s.size() && s[i] == 's') {
                        ++i;
                        unit = {1, 1};
                    } else {
                        unit = {kMinute, 3};
                    }
                    break;
                case 's':
                    unit = {kSecond, 2};
                    break;
                default:
                    return std::nullopt;
            }
        }
        if (unit.rank >= last_rank) return std::nullopt;
        last_rank = unit.rank;

        std::optional<uint64_t> part = checked_mul(*number, unit.ms);
        if (!part || total > kMax - *part) return std::nullopt;
        total += *part;

        while (i < s.size() && s[i] == ' ') ++i;
    }
    return total;
}

std::optional<bool> parse_flag(std::string_view s) {
    auto equals_ci = [](std::string_view text, std::string_view lower) {
        if (text.size() != lower.size()) return false;
        for (size_t i = 0; i < text.size(); ++i) {
            char c = text[i];
            if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
            if (c != lower[i]) return false;
        }
        return true;
    };
    if (equals_ci(s, "on")) return true;
    if (equals_ci(s, "off")) return false;
    return std::nullopt;
}

std::optional<int64_t> parse_int(std::string_view s) {
    std::optional<uint64_t> value = parse_digits(s);
    if (!value || *value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return std::nullopt;
    }
    return static_cast<int64_t>(*value);
}

}  // namespace tollgate::conf
