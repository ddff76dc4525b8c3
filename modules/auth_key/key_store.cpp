#include "modules/auth_key/key_store.hpp"

#include <cstring>

namespace tollgate::auth_key {

const std::string* KeyRecord::attr(std::string_view name) const {
    for (const auto& [n, v] : attrs) {
        if (n == name) return &v;
    }
    return nullptr;
}

namespace {

uint64_t bucket_of(const Digest& d) {
    uint64_t v;
    std::memcpy(&v, d.data(), sizeof(v));
    return v;
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// A short, printable rendering of an offending token for an error message.
std::string shown(std::string_view s) {
    std::string out;
    for (char c : s.substr(0, 40)) {
        unsigned char u = static_cast<unsigned char>(c);
        out += (u >= 0x20 && u < 0x7f && c != '"') ? c : '?';
    }
    if (s.size() > 40) out += "...";
    return out;
}

}  // namespace

std::pair<const uint32_t*, const uint32_t*> KeyStore::candidates(const Digest& digest) const {
    auto it = index_.find(bucket_of(digest));
    if (it == index_.end()) return {nullptr, nullptr};
    return {it->second.data(), it->second.data() + it->second.size()};
}

std::vector<std::string_view> split_fields(std::string_view line, size_t max) {
    std::vector<std::string_view> out;
    size_t i = 0;
    while (i < line.size() && out.size() < max) {
        while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
        size_t start = i;
        while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
        if (i > start) out.push_back(line.substr(start, i - start));
    }
    return out;
}

bool parse_digest_hex(std::string_view hex, Digest& out) {
    if (hex.size() != 64) return false;
    for (size_t i = 0; i < 32; ++i) {
        int hi = hex_value(hex[2 * i]);
        int lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = static_cast<uint8_t>(hi << 4 | lo);
    }
    return true;
}

std::string digest_hex(const Digest& d) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out(64, '0');
    for (size_t i = 0; i < 32; ++i) {
        out[2 * i] = kHex[d[i] >> 4];
        out[2 * i + 1] = kHex[d[i] & 15];
    }
    return out;
}

bool valid_name(std::string_view s) {
    if (s.empty() || s.size() > kMaxNameLen) return false;
    for (char c : s) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == ':' || c == '@' || c == '+' || c == '-';
        if (!ok) return false;
    }
    return true;
}

bool valid_attr_name(std::string_view s) {
    if (s.empty() || s.size() > kMaxAttrNameLen || s == "id" || s == "tier") return false;
    for (char c : s) {
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
    }
    return true;
}

bool valid_attr_value(std::string_view s) {
    if (s.size() > kMaxAttrValueLen) return false;
    for (char c : s) {
        if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
            return false;
        }
    }
    return true;
}

bool parse_key_store(std::string_view text, KeyStore& out, int& error_line, std::string& error) {
    KeyStore store;
    int line_no = 0;
    size_t pos = 0;
    auto fail = [&](std::string message) {
        error_line = line_no;
        error = std::move(message);
        return false;
    };
    while (pos < text.size()) {
        ++line_no;
        size_t end = text.find('\n', pos);
        if (end == std::string_view::npos) end = text.size();
        std::string_view line = text.substr(pos, end - pos);
        pos = end + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.size() > kMaxLine) return fail("line longer than 4096 bytes");
        for (char c : line) {
            unsigned char u = static_cast<unsigned char>(c);
            if ((u < 0x20 && c != '\t') || u >= 0x7f) {
                return fail("control or non-ASCII character");
            }
        }
        size_t first = line.find_first_not_of(" \t");
        if (first == std::string_view::npos || line[first] == '#') continue;

        auto fields = split_fields(line, 3 + kMaxAttrs + 1);
        if (fields.size() < 3) return fail("expected \"SHA256HEX CONSUMER TIER [NAME=VALUE ...]\"");
        if (fields.size() > 3 + kMaxAttrs) return fail("more than 32 attributes");
        if (store.records_.size() >= kMaxRecords) return fail("more than 1048576 keys");
        KeyRecord rec;
        rec.line = line_no;
        if (!parse_digest_hex(fields[0], rec.hash)) {
            return fail("invalid SHA-256 \"" + shown(fields[0]) + "\" (64 hex digits expected)");
        }
        if (!valid_name(fields[1])) return fail("invalid consumer id \"" + shown(fields[1]) + "\"");
        if (!valid_name(fields[2])) return fail("invalid tier \"" + shown(fields[2]) + "\"");
        rec.consumer = fields[1];
        rec.tier = fields[2];
        for (size_t i = 3; i < fields.size(); ++i) {
            std::string_view f = fields[i];
            size_t eq = f.find('=');
            if (eq == std::string_view::npos) {
                return fail("attribute \"" + shown(f) + "\" is not NAME=VALUE");
            }
            std::string_view name = f.substr(0, eq);
            std::string_view value = f.substr(eq + 1);
            if (!valid_attr_name(name)) {
                return fail("invalid attribute name \"" + shown(name) + "\"");
            }
            if (!valid_attr_value(value)) {
                return fail("attribute \"" + std::string(name) + "\" value too long");
            }
            if (rec.attr(name) != nullptr) {
                return fail("attribute \"" + std::string(name) + "\" is duplicate");
            }
            if (name == "revoked") rec.revoked = true;
            rec.attrs.emplace_back(name, value);
        }
        auto& bucket = store.index_[bucket_of(rec.hash)];
        for (uint32_t idx : bucket) {
            if (store.records_[idx].hash == rec.hash) {
                return fail("key hash is duplicate (first at line " +
                            std::to_string(store.records_[idx].line) + ")");
            }
        }
        bucket.push_back(static_cast<uint32_t>(store.records_.size()));
        store.records_.push_back(std::move(rec));
    }
    out = std::move(store);
    return true;
}

}  // namespace tollgate::auth_key
