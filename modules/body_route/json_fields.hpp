// The top-level fields of a JSON request body, for routing on them (modules/body_route).
// A SAX pass (nlohmann-json, non-throwing) keeps only the fields asked for: no document is built,
// nesting is bounded, and any syntax error makes the whole body malformed.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate::body_route {

enum class JsonFields : uint8_t {
    Ok,         // a JSON object (each field found or not)
    Malformed,  // not JSON, trailing bytes, or nested deeper than kMaxDepth
    NotObject,  // valid JSON whose top level is not an object
};

inline constexpr int kMaxDepth = 64;

// For each name in `fields`, the value of that top-level key when it is a string (its decoded
// text), a number (as written) or true/false; nothing when absent, null, an object or an array.
// A key given twice counts its last value (as most JSON parsers upstream do).
JsonFields extract_fields(std::string_view body, std::span<const std::string> fields,
                          std::vector<std::optional<std::string>>& out);

}  // namespace tollgate::body_route
