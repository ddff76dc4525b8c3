// Fuzzes body_route's JSON field extraction (SAX over nlohmann-json, non-throwing): no crash,
// no exception, bounded nesting, and a body it calls Ok really is a JSON object whose string
// fields match what a full parse finds.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "modules/body_route/json_fields.hpp"

using namespace tollgate::body_route;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 256 * 1024) return 0;
    std::string_view body(reinterpret_cast<const char*>(data), size);
    static const std::vector<std::string> fields = {"model", "stream", "a", ""};
    std::vector<std::optional<std::string>> out;
    JsonFields st = extract_fields(body, fields, out);
    if (out.size() != fields.size()) std::abort();
    if (st != JsonFields::Ok) {
        for (const auto& v : out) {
            if (v) std::abort();  // nothing is reported from a rejected body
        }
        return 0;
    }
    auto doc = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) std::abort();
    for (size_t i = 0; i < fields.size(); ++i) {
        auto it = doc.find(fields[i]);
        bool is_string = it != doc.end() && it->is_string();
        if (is_string && (!out[i] || *out[i] != it->get<std::string>())) std::abort();
        if (it == doc.end() && out[i]) std::abort();
    }
    return 0;
}
