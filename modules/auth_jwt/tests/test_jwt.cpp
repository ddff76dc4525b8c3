// The JWT pieces on their own: base64url, JOSE signatures, keys, verification, claims, cache.
// Tokens are signed here with OpenSSL directly (the integration tests use the openssl CLI).
#include <gtest/gtest.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <random>

#include "modules/auth_jwt/jwt.hpp"

namespace tollgate::jwt {
namespace {

TEST(JwtBase64Url, KnownVectors) {
    // RFC 4648 section 10, in the url alphabet without padding.
    const std::pair<const char*, const char*> v[] = {
        {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},          {"foo", "Zm9v"},
        {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}, {"\xfb\xff", "-_8"},
    };
    for (auto [plain, enc] : v) {
        EXPECT_EQ(base64url_encode(plain), enc);
        std::string out;
        ASSERT_TRUE(base64url_decode(enc, out)) << enc;
        EXPECT_EQ(out, plain);
    }
}

TEST(JwtBase64Url, RejectsBadInput) {
    std::string out;
    for (const char* bad :
         {"Zg==", "Zm9v=", "a", "abcde", "Zm+v", "Zm/v", "Zm9 ", "Zh", "Zm9=", "Zm9w\n"}) {
        EXPECT_FALSE(base64url_decode(bad, out)) << bad;
    }
    EXPECT_FALSE(base64url_decode(std::string_view("Zm\0v", 4), out));
}

TEST(JwtBase64Url, RoundTripsRandomBytes) {
    std::mt19937 rng(7);
    for (int n = 0; n < 300; ++n) {
        std::string in(static_cast<size_t>(n), '\0');
        for (char& c : in) c = static_cast<char>(rng());
        std::string out;
        ASSERT_TRUE(base64url_decode(base64url_encode(in), out));
        EXPECT_EQ(out, in);
    }
}

TEST(JwtJose, DerRoundTrip) {
    std::string raw(64, '\0');
    raw[0] = '\x80';  // high bit: DER needs a leading zero
    raw[31] = 1;
    raw[32] = 0;  // leading zeros in s: DER drops them
    raw[40] = 5;
    std::string der, back;
    ASSERT_TRUE(jose_to_der(raw, 32, der));
    ASSERT_TRUE(der_to_jose(der, 32, back));
    EXPECT_EQ(back, raw);
    EXPECT_FALSE(jose_to_der(raw.substr(0, 63), 32, der));
    EXPECT_FALSE(jose_to_der(raw, 48, der));
    EXPECT_FALSE(der_to_jose("garbage", 32, back));
}

TEST(JwtAlg, NamesAndKinds) {
    Alg a;
    EXPECT_FALSE(parse_alg("none", a));
    EXPECT_FALSE(parse_alg("NONE", a));
    EXPECT_FALSE(parse_alg("hs256", a));
    ASSERT_TRUE(parse_alg("ES384", a));
    EXPECT_EQ(a, Alg::ES384);
    EXPECT_EQ(alg_key_kind(a), KeyKind::EcP384);
    EXPECT_EQ(alg_key_kind(Alg::HS512), KeyKind::Hmac);
    EXPECT_EQ(alg_key_kind(Alg::PS256), KeyKind::Rsa);
    EXPECT_EQ(alg_key_kind(Alg::EdDSA), KeyKind::Okp);
    for (size_t i = 0; i < kAlgCount; ++i) {
        ASSERT_TRUE(parse_alg(alg_name(static_cast<Alg>(i)), a));
        EXPECT_EQ(static_cast<size_t>(a), i);
    }
}

// ---- signing helpers -----------------------------------------------------------------------

PkeyPtr generate(const char* type, const char* curve = nullptr, int bits = 0) {
    EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr);
    EVP_PKEY* k = nullptr;
    EVP_PKEY_keygen_init(ctx);
    if (curve != nullptr) EVP_PKEY_CTX_set_group_name(ctx, curve);
    if (bits != 0) EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, bits);
    EVP_PKEY_keygen(ctx, &k);
    EVP_PKEY_CTX_free(ctx);
    return PkeyPtr(k);
}

std::string public_pem(EVP_PKEY* k) {
    BIO* b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, k);
    char* p;
    long n = BIO_get_mem_data(b, &p);
    std::string s(p, static_cast<size_t>(n));
    BIO_free(b);
    return s;
}

std::string sign(Alg alg, EVP_PKEY* k, const std::string& secret, const std::string& input) {
    static const char* md[] = {"SHA256", "SHA384", "SHA512", "SHA256", "SHA384", "SHA512",
                               "SHA256", "SHA384", "SHA512", "SHA256", "SHA384", nullptr};
    const char* d = md[static_cast<size_t>(alg)];
    if (alg_key_kind(alg) == KeyKind::Hmac) {
        unsigned char mac[64];
        size_t len = 0;
        EVP_Q_mac(nullptr, "HMAC", nullptr, d, nullptr, secret.data(), secret.size(),
                  reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac,
                  sizeof(mac), &len);
        return std::string(reinterpret_cast<char*>(mac), len);
    }
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX* pctx = nullptr;
    EVP_DigestSignInit_ex(ctx, &pctx, d, nullptr, nullptr, k, nullptr);
    if (alg == Alg::PS256 || alg == Alg::PS384 || alg == Alg::PS512) {
        EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
    }
    size_t len = 0;
    EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()),
                   input.size());
    std::string sig(len, '\0');
    EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                   reinterpret_cast<const unsigned char*>(input.data()), input.size());
    sig.resize(len);
    EVP_MD_CTX_free(ctx);
    if (alg == Alg::ES256 || alg == Alg::ES384) {
        std::string raw;
        EXPECT_TRUE(der_to_jose(sig, alg == Alg::ES256 ? 32 : 48, raw));
        return raw;
    }
    return sig;
}

std::string mint(Alg alg, EVP_PKEY* k, const std::string& secret, const Json& payload,
                 const std::string& kid = "") {
    Json header = {{"alg", alg_name(alg)}, {"typ", "JWT"}};
    if (!kid.empty()) header["kid"] = kid;
    std::string input = base64url_encode(header.dump()) + "." + base64url_encode(payload.dump());
    return input + "." + base64url_encode(sign(alg, k, secret, input));
}

struct Keys {
    PkeyPtr rsa = generate("RSA", nullptr, 2048);
    PkeyPtr p256 = generate("EC", "P-256");
    PkeyPtr p384 = generate("EC", "P-384");
    PkeyPtr ed = generate("ED25519");
    std::string secret = "0123456789abcdef0123456789abcdef";
    KeySet set;
    Keys() {
        std::string e;
        EXPECT_TRUE(set.add_pem(public_pem(rsa.get()), "", e)) << e;
        EXPECT_TRUE(set.add_pem(public_pem(p256.get()), "", e)) << e;
        EXPECT_TRUE(set.add_pem(public_pem(p384.get()), "", e)) << e;
        EXPECT_TRUE(set.add_pem(public_pem(ed.get()), "", e)) << e;
        EXPECT_TRUE(set.add_secret(secret, "", e)) << e;
    }
    EVP_PKEY* for_alg(Alg a) {
        switch (alg_key_kind(a)) {
            case KeyKind::Rsa:
                return rsa.get();
            case KeyKind::EcP256:
                return p256.get();
            case KeyKind::EcP384:
                return p384.get();
            case KeyKind::Okp:
                return ed.get();
            default:
                return nullptr;
        }
    }
};

Keys& keys() {
    static Keys k;
    return k;
}

TEST(JwtVerify, EveryAlgorithmGoodAndTampered) {
    Keys& k = keys();
    Json payload = {{"sub", "alice"}};
    for (size_t i = 0; i < kAlgCount; ++i) {
        Alg a = static_cast<Alg>(i);
        std::string t = mint(a, k.for_alg(a), k.secret, payload);
        Token tok;
        EXPECT_EQ(verify_token(t, k.set, kAllAlgs, tok), Error::None) << alg_name(a);
        EXPECT_EQ(tok.payload["sub"], "alice");
        // Flip one signature character (keep the last one: its unused bits must stay zero).
        std::string bad = t;
        size_t pos = bad.rfind('.') + 2;
        bad[pos] = bad[pos] == 'A' ? 'B' : 'A';
        EXPECT_EQ(verify_token(bad, k.set, kAllAlgs, tok), Error::BadSignature) << alg_name(a);
        // A changed payload under the old signature.
        std::string other = mint(a, k.for_alg(a), k.secret, Json{{"sub", "mallory"}});
        std::string spliced = t.substr(0, t.find('.')) +
                              other.substr(other.find('.'), other.rfind('.') - other.find('.')) +
                              t.substr(t.rfind('.'));
        EXPECT_EQ(verify_token(spliced, k.set, kAllAlgs, tok), Error::BadSignature) << alg_name(a);
        // Not in the allowlist.
        EXPECT_EQ(verify_token(t, k.set, kAllAlgs & ~(1u << i), tok), Error::AlgNotAllowed);
    }
}

TEST(JwtVerify, AlgNoneAndConfusion) {
    Keys& k = keys();
    std::string h = base64url_encode(R"({"alg":"none"})");
    std::string p = base64url_encode(R"({"sub":"x"})");
    Token tok;
    EXPECT_EQ(verify_token(h + "." + p + ".", k.set, kAllAlgs, tok), Error::BadAlg);
    // HS256 with the RSA public key's PEM as the HMAC secret, against a set holding only RSA.
    KeySet rsa_only;
    std::string e, pem = public_pem(k.rsa.get());
    ASSERT_TRUE(rsa_only.add_pem(pem, "", e));
    std::string forged = mint(Alg::HS256, nullptr, pem, Json{{"sub", "x"}});
    EXPECT_EQ(verify_token(forged, rsa_only, kAllAlgs, tok), Error::NoKey);
    // crit headers are not understood: rejected.
    std::string hc = base64url_encode(R"({"alg":"HS256","crit":["b64"]})");
    EXPECT_EQ(verify_token(hc + "." + p + ".AAAA", k.set, kAllAlgs, tok), Error::BadAlg);
}

TEST(JwtVerify, Malformed) {
    Keys& k = keys();
    Token tok;
    std::string good = mint(Alg::HS256, nullptr, k.secret, Json{{"sub", "a"}});
    for (std::string bad :
         {std::string(""), std::string("abc"), std::string("a.b"), good + ".x", std::string("...."),
          std::string("e30.e30"), std::string("!!.e30.AAAA"), std::string("W10.e30.AAAA"),
          std::string("bm90anNvbg.e30.AAAA"), good.substr(0, good.size() - 1)}) {
        Error e = verify_token(bad, k.set, kAllAlgs, tok);
        EXPECT_NE(e, Error::None) << bad;
    }
    EXPECT_EQ(verify_token(std::string(kMaxTokenSize + 1, 'a'), k.set, kAllAlgs, tok),
              Error::TooLarge);
}

TEST(JwtVerify, KidSelection) {
    PkeyPtr a = generate("EC", "P-256"), b = generate("EC", "P-256");
    KeySet set;
    std::string e;
    ASSERT_TRUE(set.add_pem(public_pem(a.get()), "a", e));
    ASSERT_TRUE(set.add_pem(public_pem(b.get()), "b", e));
    Token tok;
    EXPECT_EQ(verify_token(mint(Alg::ES256, b.get(), "", Json::object(), "b"), set, kAllAlgs, tok),
              Error::None);
    EXPECT_EQ(verify_token(mint(Alg::ES256, b.get(), "", Json::object(), "a"), set, kAllAlgs, tok),
              Error::BadSignature);
    EXPECT_EQ(verify_token(mint(Alg::ES256, b.get(), "", Json::object(), "c"), set, kAllAlgs, tok),
              Error::NoKey);
    // A key without a kid serves any kid.
    KeySet anon;
    ASSERT_TRUE(anon.add_pem(public_pem(b.get()), "", e));
    EXPECT_EQ(verify_token(mint(Alg::ES256, b.get(), "", Json::object(), "c"), anon, kAllAlgs, tok),
              Error::None);
    // No kid: every key of the kind is tried.
    EXPECT_EQ(verify_token(mint(Alg::ES256, b.get(), "", Json::object()), set, kAllAlgs, tok),
              Error::None);
}

TEST(JwtKeys, Jwks) {
    // RFC 7517 appendix A.1's public keys (an EC P-256 key and an RSA key).
    const char* jwks = R"({"keys":[
      {"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
       "y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM","use":"enc","kid":"1"},
      {"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
       "y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM","kid":"ec"},
      {"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
       "e":"AQAB","alg":"RS256","kid":"2011-04-29"},
      {"kty":"oct","k":"c2VjcmV0","kid":"h"},
      {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"ed"}
    ]})";
    KeySet set;
    std::string e;
    ASSERT_TRUE(set.add_jwks(jwks, e)) << e;
    ASSERT_EQ(set.keys().size(), 4u);  // the "enc" key is skipped
    EXPECT_EQ(set.keys()[0].kind, KeyKind::EcP256);
    EXPECT_EQ(set.keys()[1].kind, KeyKind::Rsa);
    EXPECT_TRUE(set.keys()[1].has_alg);
    EXPECT_EQ(set.keys()[2].secret, "secret");
    EXPECT_EQ(set.keys()[3].kind, KeyKind::Okp);

    for (
        const char* bad : {
            "not json",
            "[]",
            R"({"keys":{}})",
            R"({"keys":[{"kty":"XX"}]})",
            R"({"keys":[{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}]})",
            R"({"keys":[{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}]})",
            // A point that is not on the curve.
            R"({"keys":[{"kty":"EC","crv":"P-256","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE"}]})",
            R"({"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]})",  // too short
            R"({"keys":[{"kty":"oct","k":"c2VjcmV0","alg":"RS256"}]})",
            R"({"keys":[{"kty":"oct","k":"c2VjcmV0","alg":"none"}]})",
        }) {
        KeySet s;
        EXPECT_FALSE(s.add_jwks(bad, e)) << bad;
        EXPECT_FALSE(e.empty());
    }
    KeySet s;
    EXPECT_FALSE(s.add_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "", e));
    EXPECT_NE(e.find('('), std::string::npos) << e;  // carries the OpenSSL reason
}

TEST(JwtClaims, Times) {
    Token t;
    t.payload = {{"exp", 1000}, {"nbf", 900}, {"iat", 900}};
    t.has_exp = true;
    t.exp = 1000;
    EXPECT_EQ(check_times(t, 950, 0), Error::None);
    EXPECT_EQ(check_times(t, 1000, 0), Error::Expired);
    EXPECT_EQ(check_times(t, 1000, 60), Error::None);
    EXPECT_EQ(check_times(t, 1060, 60), Error::Expired);
    EXPECT_EQ(check_times(t, 899, 0), Error::NotYetValid);
    EXPECT_EQ(check_times(t, 850, 60), Error::None);
    t.payload["nbf"] = "soon";
    EXPECT_EQ(check_times(t, 950, 0), Error::BadTimeClaim);
    t.payload.erase("nbf");
    t.payload["iat"] = 2000;
    EXPECT_EQ(check_times(t, 950, 0), Error::IssuedInFuture);
    t.has_exp = true;
    t.exp = INT64_MIN;
    EXPECT_EQ(check_times(t, 950, 0), Error::Expired);  // no overflow
}

TEST(JwtClaims, IssuerAudienceRequire) {
    Token t;
    t.payload = Json::parse(R"({"iss":"https://idp","aud":["api","web"],"sub":"u1",
        "scope":"agents:read agents:write","roles":["admin","dev"],"org":{"team":"core"},
        "n":5,"flag":true,"a.b":"dotted"})");
    ClaimRules r;
    EXPECT_EQ(check_claims(t, r), Error::None);
    r.issuer = "https://idp";
    r.audience = {"other", "web"};
    EXPECT_EQ(check_claims(t, r), Error::None);
    r.issuer = "https://evil";
    EXPECT_EQ(check_claims(t, r), Error::BadIssuer);
    r.issuer.clear();
    r.audience = {"nope"};
    EXPECT_EQ(check_claims(t, r), Error::BadAudience);
    r.audience.clear();
    r.require = {{"scope", {"agents:write"}}};
    EXPECT_EQ(check_claims(t, r), Error::None);
    r.require = {{"scope", {"agents"}}};  // no substring matches
    EXPECT_EQ(check_claims(t, r), Error::ClaimMismatch);
    r.require = {{"roles", {"dev", "admin"}},
                 {"org.team", {"core"}},
                 {"n", {"5"}},
                 {"flag", {"true"}},
                 {"a.b", {}}};
    EXPECT_EQ(check_claims(t, r), Error::None);
    r.require = {{"org.missing", {}}};
    EXPECT_EQ(check_claims(t, r), Error::MissingClaim);
    r.require = {{"roles", {"root"}}};
    EXPECT_EQ(check_claims(t, r), Error::ClaimMismatch);
    EXPECT_TRUE(is_authorization_error(Error::ClaimMismatch));
    EXPECT_FALSE(is_authorization_error(Error::BadAudience));

    std::string s;
    render_claim(*find_claim(t.payload, "roles"), s);
    EXPECT_EQ(s, "admin,dev");
    s.clear();
    render_claim(*find_claim(t.payload, "org"), s);
    EXPECT_EQ(s, R"({"team":"core"})");
    s.clear();
    render_claim(*find_claim(t.payload, "org.team"), s);
    EXPECT_EQ(s, "core");
    EXPECT_EQ(find_claim(t.payload, "sub.x"), nullptr);
    EXPECT_EQ(find_claim(t.payload, "org."), nullptr);
}

TEST(JwtCache, LruAndExpiry) {
    VerifyCache c(2);
    KeySet k1, k2;
    auto tok = std::make_shared<Token>();
    Digest a{}, b{}, d{};
    a[0] = 1;
    b[0] = 2;
    d[0] = 3;
    c.insert(a, &k1, tok, 100);
    c.insert(b, &k1, tok, 100);
    EXPECT_NE(c.find(a, &k1, 50), nullptr);  // a is now the most recent
    c.insert(d, &k1, tok, 100);              // evicts b
    EXPECT_EQ(c.size(), 2u);
    EXPECT_EQ(c.find(b, &k1, 50), nullptr);
    EXPECT_NE(c.find(d, &k1, 50), nullptr);
    EXPECT_EQ(c.find(a, &k2, 50), nullptr);  // another key set: a miss, and dropped
    EXPECT_EQ(c.size(), 1u);
    EXPECT_EQ(c.find(d, &k1, 100), nullptr);  // expired
    EXPECT_EQ(c.size(), 0u);
    VerifyCache off(0);
    off.insert(a, &k1, tok, 100);
    EXPECT_EQ(off.size(), 0u);
}

}  // namespace
}  // namespace tollgate::jwt
