// libFuzzer target for the JWT parse + verify path (modules/auth_jwt/jwt.cpp).
//
// Input: the first byte picks a mode, the rest is the data.
//   mode 0-4: a compact token, verified against a fixed key set (HMAC, RSA, P-256, P-384,
//             Ed25519 with and without kids) with every algorithm allowed, then its claims are
//             checked whatever the signature said (the payload is attacker-controlled anyway).
//   mode 5:   a JWKS document loaded into a key set.
//   mode 6:   base64url decode; a decoded value must re-encode to the input.
//   mode 7:   a JOSE ECDSA signature converted to DER and back.
// Checks: no crash, no leak, and the invariants above; only Error::None yields a signed token
// (which the fuzzer cannot forge, so verification succeeding is a bug unless the data carries an
// HMAC signature made with the fixed secret, as the seed corpus does).
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "modules/auth_jwt/jwt.hpp"

namespace {
using namespace tollgate::jwt;

void check(bool ok) {
    if (!ok) __builtin_trap();
}

std::string pem_of(const char* type, const char* curve, int bits) {
    EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr);
    EVP_PKEY* k = nullptr;
    EVP_PKEY_keygen_init(ctx);
    if (curve != nullptr) EVP_PKEY_CTX_set_group_name(ctx, curve);
    if (bits != 0) EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, bits);
    EVP_PKEY_keygen(ctx, &k);
    EVP_PKEY_CTX_free(ctx);
    BIO* b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, k);
    char* p;
    long n = BIO_get_mem_data(b, &p);
    std::string s(p, static_cast<size_t>(n));
    BIO_free(b);
    EVP_PKEY_free(k);
    return s;
}

const KeySet& key_set() {
    static const KeySet set = [] {
        KeySet s;
        std::string e;
        check(s.add_secret("fuzz-secret", "", e));
        check(s.add_secret("fuzz-secret-2", "h2", e));
        check(s.add_pem(pem_of("RSA", nullptr, 2048), "r", e));
        check(s.add_pem(pem_of("EC", "P-256", 0), "", e));
        check(s.add_pem(pem_of("EC", "P-384", 0), "e384", e));
        check(s.add_pem(pem_of("ED25519", nullptr, 0), "", e));
        return s;
    }();
    return set;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    uint8_t mode = data[0] & 7;
    std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
    switch (mode) {
        case 5: {
            KeySet s;
            std::string error;
            if (!s.add_jwks(in, error)) check(!error.empty());
            break;
        }
        case 6: {
            std::string out;
            if (base64url_decode(in, out)) check(base64url_encode(out) == in);
            break;
        }
        case 7: {
            std::string der, raw;
            size_t half = in.size() / 2;
            if (jose_to_der(in, half, der)) {
                check(der_to_jose(der, half, raw));
                check(raw == in);
            }
            break;
        }
        default: {
            Token t;
            Error e = verify_token(in, key_set(), kAllAlgs, t);
            check(e != Error::None || t.alg == Alg::HS256 || t.alg == Alg::HS384 ||
                  t.alg == Alg::HS512);
            if (!t.payload.is_object()) break;
            (void)check_times(t, 1700000000, mode);
            ClaimRules rules;
            rules.issuer = "iss";
            rules.audience = {"a", "b"};
            rules.require = {{"scope", {"x", "y"}}, {"org.team", {}}, {"roles", {"admin"}}};
            (void)check_claims(t, rules);
            std::string s;
            if (const Json* c = find_claim(t.payload, "org.team")) render_claim(*c, s);
            if (const Json* c = find_claim(t.payload, "roles")) render_claim(*c, s);
            if (const Json* c = find_claim(t.header, "kid")) render_claim(*c, s);
            break;
        }
    }
    return 0;
}
