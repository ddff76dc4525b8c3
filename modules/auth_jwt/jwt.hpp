// JSON Web Token verification (RFC 7515 JWS compact form, RFC 7518 algorithms, RFC 7519 claims)
// with no server knowledge: base64url, JOSE <-> DER ECDSA signatures, key sets loaded from PEM or
// JWKS into OpenSSL 3 EVP_PKEYs, signature verification, claim checks, and a bounded per-worker
// verification cache. JSON is parsed with nlohmann-json in its non-throwing mode.
//
// Data-plane functions (verify_token, check_*, VerifyCache) never throw; key loading runs in the
// master at config load and reports errors through an out-parameter.
#pragma once

#include <openssl/evp.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <list>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/json_claims.hpp"

namespace tollgate::jwt {

using Json = nlohmann::json;

// Largest token accepted (bytes of the compact form); anything longer is rejected unparsed.
inline constexpr size_t kMaxTokenSize = 16 * 1024;

// ---- base64url (RFC 4648 section 5, no padding, as JWS requires) -------------------------------

// Decodes unpadded base64url. Rejects '=' padding, characters outside the alphabet, a length of
// 4n+1 and non-zero unused trailing bits (so every value has exactly one accepted encoding).
bool base64url_decode(std::string_view in, std::string& out);
std::string base64url_encode(std::string_view in);

// ---- JOSE ECDSA signatures (RFC 7518 3.4) ------------------------------------------------------

// The JOSE form r||s (each `half` bytes, big-endian) as a DER ECDSA-Sig-Value. False when the size
// is not 2*half.
bool jose_to_der(std::string_view raw, size_t half, std::string& der);
// The reverse, for tests and tools: DER to r||s with each half left-padded to `half` bytes.
bool der_to_jose(std::string_view der, size_t half, std::string& raw);

// ---- algorithms and keys -----------------------------------------------------------------------

enum class Alg : uint8_t {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
    Count
};
inline constexpr size_t kAlgCount = static_cast<size_t>(Alg::Count);
using AlgSet = uint32_t;  // bit i: Alg(i) allowed
inline constexpr AlgSet kAllAlgs = (1u << kAlgCount) - 1;

bool parse_alg(std::string_view name, Alg& out);  // "none" and unknown names: false
std::string_view alg_name(Alg a);

// The key type an algorithm needs. A token is only ever checked against keys of its algorithm's
// kind, so an HS256 token is never "verified" with an RSA public key used as an HMAC secret.
enum class KeyKind : uint8_t { Hmac, Rsa, EcP256, EcP384, Okp };
KeyKind alg_key_kind(Alg a);

struct PkeyFree {
    void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

struct Key {
    std::string kid;  // empty: none
    bool has_alg = false;
    Alg alg = Alg::HS256;  // the JWK's "alg", when has_alg: only that algorithm may use it
    KeyKind kind = KeyKind::Hmac;
    PkeyPtr pkey;        // asymmetric kinds
    std::string secret;  // Hmac
};

// An immutable set of keys, built in the master at load.
class KeySet {
  public:
    // Adds the public key of a PEM file's contents (a public key, or a private key whose public
    // half is used). `error` gets the OpenSSL reason.
    bool add_pem(std::string_view pem, std::string_view kid, std::string& error);
    // Adds every signing key of a JWKS document ({"keys":[...]}) or of a single JWK object.
    // Keys with "use" other than "sig" are skipped; unknown kty/crv are errors.
    bool add_jwks(std::string_view json, std::string& error);
    // Adds an HMAC secret (at least 1 byte).
    bool add_secret(std::string_view secret, std::string_view kid, std::string& error);

    const std::vector<Key>& keys() const { return keys_; }
    bool empty() const { return keys_.empty(); }

  private:
    bool add_jwk(const Json& jwk, size_t index, std::string& error);
    std::vector<Key> keys_;
};

// ---- tokens ------------------------------------------------------------------------------------

enum class Error : uint8_t {
    None,
    TooLarge,
    Malformed,      // not three base64url segments with JSON objects
    BadAlg,         // alg missing, "none", unknown, or "crit" present
    AlgNotAllowed,  // not in the location's list
    NoKey,          // no key of the algorithm's kind (and kid)
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    BadTimeClaim,  // exp/nbf/iat not a number
    BadIssuer,
    BadAudience,
    MissingClaim,  // 403 class from here on
    ClaimMismatch,
};
// A short description for error_description and logs (no token data in it).
std::string_view describe(Error e);
// Failures that mean "authenticated but not allowed" (403 rather than 401).
inline bool is_authorization_error(Error e) {
    return e >= Error::MissingClaim;
}

struct Token {
    Json header;
    Json payload;
    Alg alg = Alg::HS256;
    bool has_exp = false;
    int64_t exp = 0;
};

// Parses `token` and verifies its signature against `keys` (only keys of the algorithm's kind;
// with a "kid" header only keys with that kid or with none). `allowed` is checked before any key
// is tried.
Error verify_token(std::string_view token, const KeySet& keys, AlgSet allowed, Token& out);

// exp / nbf / iat against `now` (seconds since the epoch) with `leeway` seconds of slack.
Error check_times(const Token& t, int64_t now, int64_t leeway);

// A required claim: present, and when `values` is not empty, containing every value (a string
// claim as a space-separated list, as OAuth "scope"; an array claim by element).
struct Requirement {
    std::string claim;  // dotted path
    std::vector<std::string> values;
};

struct ClaimRules {
    std::string issuer;                 // empty: not checked
    std::vector<std::string> audience;  // empty: not checked; else aud must contain one of them
    std::vector<Requirement> require;
};
Error check_claims(const Token& t, const ClaimRules& rules);

using claims::find_claim;  // core/json_claims.hpp
using claims::render_claim;

// ---- the per-worker verification cache ---------------------------------------------------------

using Digest = std::array<uint8_t, 32>;
bool sha256(std::string_view data, Digest& out);

// An LRU of verified tokens keyed by the token's SHA-256 and the key set they were verified
// against, holding at most `capacity` entries, each until min(now + ttl, exp).
class VerifyCache {
  public:
    explicit VerifyCache(size_t capacity) : capacity_(capacity) {}
    std::shared_ptr<const Token> find(const Digest& d, const KeySet* keys, int64_t now);
    void insert(const Digest& d, const KeySet* keys, std::shared_ptr<const Token> token,
                int64_t expires);
    size_t size() const { return map_.size(); }
    size_t capacity() const { return capacity_; }

  private:
    struct Entry {
        Digest digest;
        const KeySet* keys;
        std::shared_ptr<const Token> token;
        int64_t expires;
    };
    struct DigestHash {
        size_t operator()(const Digest& d) const {
            size_t h;
            std::memcpy(&h, d.data(), sizeof(h));  // already uniformly distributed
            return h;
        }
    };
    size_t capacity_;
    std::list<Entry> lru_;  // most recent first
    std::unordered_map<Digest, std::list<Entry>::iterator, DigestHash> map_;
};

}  // namespace tollgate::jwt
