#include "modules/body_route/json_fields.hpp"

#include <nlohmann/json.hpp>

namespace tollgate::body_route {

namespace {

using Json = nlohmann::json;

class TopLevel final : public nlohmann::json_sax<Json> {
  public:
    TopLevel(std::span<const std::string> fields, std::vector<std::optional<std::string>>& out)
        : fields_(fields), out_(out) {}

    bool null() override { return scalar(std::nullopt); }
    bool boolean(bool v) override { return scalar(std::string(v ? "true" : "false")); }
    bool number_integer(number_integer_t v) override { return scalar(std::to_string(v)); }
    bool number_unsigned(number_unsigned_t v) override { return scalar(std::to_string(v)); }
    bool number_float(number_float_t, const string_t& text) override { return scalar(text); }
    bool string(string_t& v) override { return scalar(v); }
    bool binary(binary_t&) override { return false; }
    bool start_object(std::size_t) override { return open(true); }
    bool key(string_t& k) override {
        pending_ = -1;
        if (depth_ != 1) return true;
        for (size_t i = 0; i < fields_.size(); ++i) {
            if (fields_[i] == k) pending_ = static_cast<int>(i);
        }
        return true;
    }
    bool end_object() override { return close(); }
    bool start_array(std::size_t) override { return open(false); }
    bool end_array() override { return close(); }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
        return false;  // no exception: the caller sees sax_parse return false
    }

    bool top_is_object() const { return top_object_; }
    bool too_deep() const { return too_deep_; }

  private:
    bool scalar(std::optional<std::string> v) {
        if (depth_ == 1 && pending_ >= 0) out_[static_cast<size_t>(pending_)] = std::move(v);
        pending_ = -1;
        return true;
    }
    bool open(bool object) {
        if (depth_ == 0) top_object_ = object;
        if (depth_ == 1 && pending_ >= 0) out_[static_cast<size_t>(pending_)].reset();
        pending_ = -1;
        if (++depth_ > kMaxDepth) {
            too_deep_ = true;
            return false;
        }
        return true;
    }
    bool close() {
        --depth_;
        pending_ = -1;
        return true;
    }

    std::span<const std::string> fields_;
    std::vector<std::optional<std::string>>& out_;
    int depth_ = 0;
    int pending_ = -1;
    bool top_object_ = false;
    bool too_deep_ = false;
};

}  // namespace

JsonFields extract_fields(std::string_view body, std::span<const std::string> fields,
                          std::vector<std::optional<std::string>>& out) {
    out.assign(fields.size(), std::nullopt);
    TopLevel sax(fields, out);
    bool ok = Json::sax_parse(body.begin(), body.end(), &sax, Json::input_format_t::json, true);
    if (!ok || sax.too_deep()) {
        out.assign(fields.size(), std::nullopt);
        return JsonFields::Malformed;
    }
    if (!sax.top_is_object()) {
        out.assign(fields.size(), std::nullopt);
        return JsonFields::NotObject;
    }
    return JsonFields::Ok;
}

}  // namespace tollgate::body_route
