// Claims in JSON objects (a JWT's payload, a token introspection reply), as the auth modules
// read them: by dotted path, rendered as variable values, and matched against required values.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace tollgate::claims {

using Json = nlohmann::json;

// The claim at `path` in `obj`: the whole name as a member first, then split at '.'.
const Json* find_claim(const Json& obj, std::string_view path);
// A claim as a variable value: strings as they are, numbers and booleans in JSON form, arrays
// joined with "," (each element as above), objects as compact JSON.
void render_claim(const Json& v, std::string& out);
// Whether claim `c` contains `value`: a string as a space-separated list (OAuth "scope"), an
// array by element, a number or boolean by its JSON form.
bool contains(const Json& c, std::string_view value);

}  // namespace tollgate::claims
