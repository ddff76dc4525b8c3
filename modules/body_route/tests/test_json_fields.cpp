// body_route's JSON field extraction (modules/body_route/json_fields.hpp).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "modules/body_route/json_fields.hpp"

namespace tollgate::body_route {
namespace {

const std::vector<std::string> kFields = {"model", "stream", "temperature", "n"};

std::vector<std::optional<std::string>> run(std::string_view body, JsonFields want) {
    std::vector<std::optional<std::string>> out;
    EXPECT_EQ(extract_fields(body, kFields, out), want) << body;
    EXPECT_EQ(out.size(), kFields.size());
    return out;
}

TEST(JsonFields, ScalarsAtTheTopLevel) {
    auto out = run(R"({"model":"gpt-4","stream":true,"temperature":0.25,"n":3})", JsonFields::Ok);
    EXPECT_EQ(out[0], "gpt-4");
    EXPECT_EQ(out[1], "true");
    EXPECT_EQ(out[2], "0.25");
    EXPECT_EQ(out[3], "3");
}

TEST(JsonFields, EscapesAreDecoded) {
    auto out = run(R"({"model":"a\"b\u00e9\n"})", JsonFields::Ok);
    EXPECT_EQ(out[0], "a\"b\xc3\xa9\n");
}

TEST(JsonFields, NestedAndNonScalarValuesDoNotCount) {
    auto out =
        run(R"({"x":{"model":"gpt-4"},"stream":[true],"n":null,"temperature":{}})", JsonFields::Ok);
    for (const auto& v : out) EXPECT_FALSE(v);
    out = run(R"({"list":[{"model":"a"}],"model":"b"})", JsonFields::Ok);
    EXPECT_EQ(out[0], "b");
}

TEST(JsonFields, LastDuplicateWins) {
    auto out = run(R"({"model":"a","model":"b"})", JsonFields::Ok);
    EXPECT_EQ(out[0], "b");
    out = run(R"({"model":"a","model":{"b":1}})", JsonFields::Ok);
    EXPECT_FALSE(out[0]);
}

TEST(JsonFields, MalformedAndNotObject) {
    for (std::string_view bad : {"", "{", R"({"model":"a",})", R"({"model":"a"} x)", "nul",
                                 "{\"model\":\"\xff\"}", R"({'model':'a'})"}) {
        auto out = run(bad, JsonFields::Malformed);
        for (const auto& v : out) EXPECT_FALSE(v);
    }
    run("[1,2]", JsonFields::NotObject);
    run("\"gpt-4\"", JsonFields::NotObject);
    run("42", JsonFields::NotObject);
}

TEST(JsonFields, NestingIsBounded) {
    std::string deep(kMaxDepth, '[');
    deep += std::string(kMaxDepth, ']');
    run(deep, JsonFields::NotObject);
    std::string deeper(kMaxDepth + 1, '[');
    deeper += std::string(kMaxDepth + 1, ']');
    run(deeper, JsonFields::Malformed);
    std::string huge(200000, '[');  // rejected at kMaxDepth, long before the end
    run(huge, JsonFields::Malformed);
}

}  // namespace
}  // namespace tollgate::body_route
