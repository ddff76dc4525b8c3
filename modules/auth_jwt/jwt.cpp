// JWT verification; see jwt.hpp.
#include "modules/auth_jwt/jwt.hpp"

#include "core/json_claims.hpp"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <cmath>

namespace tollgate::jwt {

// ---- base64url ---------------------------------------------------------------------------------

namespace {
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}
}  // namespace

bool base64url_decode(std::string_view in, std::string& out) {
    out.clear();
    if (in.size() % 4 == 1) return false;
    out.reserve(in.size() / 4 * 3 + 2);
    uint32_t acc = 0;
    int bits = 0;
    for (unsigned char c : in) {
        int v = b64_value(c);
        if (v < 0) return false;
        acc = (acc << 6) | static_cast<uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xff));
        }
    }
    // Leftover bits (2 or 4) must be zero: one canonical encoding per value.
    return (acc & ((1u << bits) - 1)) == 0;
}

std::string base64url_encode(std::string_view in) {
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    uint32_t acc = 0;
    int bits = 0;
    for (unsigned char c : in) {
        acc = (acc << 8) | c;
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out.push_back(kB64[(acc >> bits) & 63]);
        }
    }
    if (bits > 0) out.push_back(kB64[(acc << (6 - bits)) & 63]);
    return out;
}

// ---- JOSE <-> DER ------------------------------------------------------------------------------

bool jose_to_der(std::string_view raw, size_t half, std::string& der) {
    if (half == 0 || raw.size() != 2 * half) return false;
    ECDSA_SIG* sig = ECDSA_SIG_new();
    BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()),
                          static_cast<int>(half), nullptr);
    BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()) + half,
                          static_cast<int>(half), nullptr);
    if (sig == nullptr || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig, r, s) != 1) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(sig);
        return false;
    }
    int len = i2d_ECDSA_SIG(sig, nullptr);
    bool ok = len > 0;
    if (ok) {
        der.resize(static_cast<size_t>(len));
        auto* p = reinterpret_cast<unsigned char*>(der.data());
        ok = i2d_ECDSA_SIG(sig, &p) == len;
    }
    ECDSA_SIG_free(sig);
    return ok;
}

bool der_to_jose(std::string_view der, size_t half, std::string& raw) {
    const auto* p = reinterpret_cast<const unsigned char*>(der.data());
    ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size()));
    if (sig == nullptr) return false;
    const BIGNUM* r = ECDSA_SIG_get0_r(sig);
    const BIGNUM* s = ECDSA_SIG_get0_s(sig);
    raw.assign(2 * half, '\0');
    auto* out = reinterpret_cast<unsigned char*>(raw.data());
    bool ok = BN_bn2binpad(r, out, static_cast<int>(half)) == static_cast<int>(half) &&
              BN_bn2binpad(s, out + half, static_cast<int>(half)) == static_cast<int>(half);
    ECDSA_SIG_free(sig);
    return ok;
}

// ---- algorithms --------------------------------------------------------------------------------

namespace {
constexpr std::string_view kAlgNames[kAlgCount] = {"HS256", "HS384", "HS512", "RS256",
                                                   "RS384", "RS512", "PS256", "PS384",
                                                   "PS512", "ES256", "ES384", "EdDSA"};

const char* alg_digest(Alg a) {
    switch (a) {
        case Alg::HS256:
        case Alg::RS256:
        case Alg::PS256:
        case Alg::ES256:
            return "SHA256";
        case Alg::HS384:
        case Alg::RS384:
        case Alg::PS384:
        case Alg::ES384:
            return "SHA384";
        case Alg::HS512:
        case Alg::RS512:
        case Alg::PS512:
            return "SHA512";
        default:
            return nullptr;  // EdDSA: no separate digest
    }
}
}  // namespace

bool parse_alg(std::string_view name, Alg& out) {
    for (size_t i = 0; i < kAlgCount; ++i) {
        if (kAlgNames[i] == name) {
            out = static_cast<Alg>(i);
            return true;
        }
    }
    return false;
}

std::string_view alg_name(Alg a) {
    return static_cast<size_t>(a) < kAlgCount ? kAlgNames[static_cast<size_t>(a)] : "?";
}

KeyKind alg_key_kind(Alg a) {
    switch (a) {
        case Alg::HS256:
        case Alg::HS384:
        case Alg::HS512:
            return KeyKind::Hmac;
        case Alg::ES256:
            return KeyKind::EcP256;
        case Alg::ES384:
            return KeyKind::EcP384;
        case Alg::EdDSA:
            return KeyKind::Okp;
        default:
            return KeyKind::Rsa;
    }
}

// ---- key loading -------------------------------------------------------------------------------

namespace {

std::string openssl_reason() {
    unsigned long e = ERR_peek_last_error();
    const char* reason = e != 0 ? ERR_reason_error_string(e) : nullptr;
    ERR_clear_error();
    return reason != nullptr ? reason : "unknown OpenSSL error";
}

// The kind of an asymmetric key, or false for a type JWS cannot use.
bool pkey_kind(EVP_PKEY* pkey, KeyKind& kind, std::string& error) {
    if (EVP_PKEY_is_a(pkey, "RSA") || EVP_PKEY_is_a(pkey, "RSA-PSS")) {
        if (EVP_PKEY_get_bits(pkey) < 2048) {
            error = "RSA key shorter than 2048 bits";
            return false;
        }
        kind = KeyKind::Rsa;
        return true;
    }
    if (EVP_PKEY_is_a(pkey, "EC")) {
        char group[64] = {};
        size_t len = 0;
        if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), &len) != 1) {
            error = "EC key without a named curve";
            return false;
        }
        std::string_view g(group, len);
        if (g == "prime256v1" || g == "P-256") {
            kind = KeyKind::EcP256;
        } else if (g == "secp384r1" || g == "P-384") {
            kind = KeyKind::EcP384;
        } else {
            error = "EC curve \"" + std::string(g) + "\" is not P-256 or P-384";
            return false;
        }
        return true;
    }
    if (EVP_PKEY_is_a(pkey, "ED25519") || EVP_PKEY_is_a(pkey, "ED448")) {
        kind = KeyKind::Okp;
        return true;
    }
    error = "unsupported key type";
    return false;
}

bool b64_member(const Json& jwk, const char* name, std::string& out) {
    auto it = jwk.find(name);
    return it != jwk.end() && it->is_string() &&
           base64url_decode(it->get_ref<const std::string&>(), out) && !out.empty();
}

struct BldFree {
    void operator()(OSSL_PARAM_BLD* b) const { OSSL_PARAM_BLD_free(b); }
};
struct ParamFree {
    void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
};
struct CtxFree {
    void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
};
struct BnFree {
    void operator()(BIGNUM* b) const { BN_free(b); }
};

// An EVP_PKEY from OSSL_PARAMs built by `push`.
template <class Push>
PkeyPtr pkey_fromdata(const char* type, Push push) {
    std::unique_ptr<OSSL_PARAM_BLD, BldFree> bld(OSSL_PARAM_BLD_new());
    if (!bld || !push(bld.get())) return nullptr;
    std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(bld.get()));
    std::unique_ptr<EVP_PKEY_CTX, CtxFree> ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
    EVP_PKEY* pkey = nullptr;
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
        EVP_PKEY_fromdata(ctx.get(), &pkey, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
        return nullptr;
    }
    return PkeyPtr(pkey);
}

}  // namespace

bool KeySet::add_pem(std::string_view pem, std::string_view kid, std::string& error) {
    ERR_clear_error();
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    if (bio == nullptr) {
        error = openssl_reason();
        return false;
    }
    EVP_PKEY* pkey = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
    if (pkey == nullptr) {
        ERR_clear_error();
        (void)BIO_reset(bio);
        pkey = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
    }
    BIO_free(bio);
    if (pkey == nullptr) {
        error = "no PEM public or private key (" + openssl_reason() + ")";
        return false;
    }
    Key k;
    k.pkey.reset(pkey);
    if (!pkey_kind(pkey, k.kind, error)) return false;
    k.kid = kid;
    keys_.push_back(std::move(k));
    return true;
}

bool KeySet::add_secret(std::string_view secret, std::string_view kid, std::string& error) {
    if (secret.empty()) {
        error = "empty HMAC secret";
        return false;
    }
    Key k;
    k.kind = KeyKind::Hmac;
    k.secret = secret;
    k.kid = kid;
    keys_.push_back(std::move(k));
    return true;
}

bool KeySet::add_jwk(const Json& jwk, size_t index, std::string& error) {
    std::string where = "key " + std::to_string(index) + ": ";
    if (!jwk.is_object()) {
        error = where + "not a JSON object";
        return false;
    }
    auto str = [&](const char* name) -> std::string {
        auto it = jwk.find(name);
        return it != jwk.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    std::string use = str("use");
    if (!use.empty() && use != "sig") return true;  // an encryption key: not ours
    Key k;
    k.kid = str("kid");
    std::string alg = str("alg");
    if (!alg.empty()) {
        if (!parse_alg(alg, k.alg)) {
            error = where + "unsupported \"alg\" \"" + alg + "\"";
            return false;
        }
        k.has_alg = true;
    }
    std::string kty = str("kty");
    ERR_clear_error();
    if (kty == "oct") {
        if (!b64_member(jwk, "k", k.secret)) {
            error = where + "\"k\" missing or not base64url";
            return false;
        }
        k.kind = KeyKind::Hmac;
    } else if (kty == "RSA") {
        std::string n, e;
        if (!b64_member(jwk, "n", n) || !b64_member(jwk, "e", e)) {
            error = where + "\"n\" or \"e\" missing or not base64url";
            return false;
        }
        std::unique_ptr<BIGNUM, BnFree> bn(BN_bin2bn(
            reinterpret_cast<const unsigned char*>(n.data()), static_cast<int>(n.size()), nullptr));
        std::unique_ptr<BIGNUM, BnFree> be(BN_bin2bn(
            reinterpret_cast<const unsigned char*>(e.data()), static_cast<int>(e.size()), nullptr));
        k.pkey = pkey_fromdata("RSA", [&](OSSL_PARAM_BLD* b) {
            return bn && be && OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_N, bn.get()) == 1 &&
                   OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_E, be.get()) == 1;
        });
    } else if (kty == "EC") {
        std::string crv = str("crv");
        size_t len = crv == "P-256" ? 32 : crv == "P-384" ? 48 : 0;
        if (len == 0) {
            error = where + "EC \"crv\" \"" + crv + "\" is not P-256 or P-384";
            return false;
        }
        std::string x, y;
        if (!b64_member(jwk, "x", x) || !b64_member(jwk, "y", y) || x.size() != len ||
            y.size() != len) {
            error = where + "\"x\" or \"y\" missing or of the wrong size";
            return false;
        }
        std::string pub = "\x04" + x + y;  // uncompressed point
        const char* group = len == 32 ? "prime256v1" : "secp384r1";
        k.pkey = pkey_fromdata("EC", [&](OSSL_PARAM_BLD* b) {
            return OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) == 1 &&
                   OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, pub.data(),
                                                    pub.size()) == 1;
        });
    } else if (kty == "OKP") {
        std::string crv = str("crv");
        std::string x;
        if (crv != "Ed25519" && crv != "Ed448") {
            error = where + "OKP \"crv\" \"" + crv + "\" is not Ed25519 or Ed448";
            return false;
        }
        if (!b64_member(jwk, "x", x)) {
            error = where + "\"x\" missing or not base64url";
            return false;
        }
        k.pkey.reset(EVP_PKEY_new_raw_public_key_ex(
            nullptr, crv == "Ed25519" ? "ED25519" : "ED448", nullptr,
            reinterpret_cast<const unsigned char*>(x.data()), x.size()));
    } else {
        error = where + "unsupported \"kty\" \"" + kty + "\"";
        return false;
    }
    if (kty != "oct") {
        if (!k.pkey) {
            error = where + "invalid " + kty + " key (" + openssl_reason() + ")";
            return false;
        }
        std::string why;
        if (!pkey_kind(k.pkey.get(), k.kind, why)) {
            error = where + why;
            return false;
        }
    }
    if (k.has_alg && alg_key_kind(k.alg) != k.kind) {
        error = where + "\"alg\" \"" + alg + "\" does not fit a " + kty + " key";
        return false;
    }
    keys_.push_back(std::move(k));
    return true;
}

bool KeySet::add_jwks(std::string_view text, std::string& error) {
    Json doc = Json::parse(text.begin(), text.end(), nullptr, false);
    if (doc.is_discarded()) {
        error = "invalid JSON";
        return false;
    }
    if (!doc.is_object()) {
        error = "not a JSON object";
        return false;
    }
    auto it = doc.find("keys");
    if (it == doc.end()) return add_jwk(doc, 0, error);  // a single JWK
    if (!it->is_array()) {
        error = "\"keys\" is not an array";
        return false;
    }
    for (size_t i = 0; i < it->size(); ++i) {
        if (!add_jwk((*it)[i], i, error)) return false;
    }
    return true;
}

// ---- verification ------------------------------------------------------------------------------

namespace {

struct MdCtxFree {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

bool verify_with(const Key& k, Alg alg, std::string_view input, std::string_view sig) {
    const auto* data = reinterpret_cast<const unsigned char*>(input.data());
    if (k.kind == KeyKind::Hmac) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        size_t len = 0;
        if (EVP_Q_mac(nullptr, "HMAC", nullptr, alg_digest(alg), nullptr, k.secret.data(),
                      k.secret.size(), data, input.size(), mac, sizeof(mac), &len) == nullptr) {
            ERR_clear_error();
            return false;
        }
        return len == sig.size() && CRYPTO_memcmp(mac, sig.data(), len) == 0;
    }
    std::string der;
    if (alg == Alg::ES256 || alg == Alg::ES384) {
        if (!jose_to_der(sig, alg == Alg::ES256 ? 32 : 48, der)) return false;
        sig = der;
    }
    std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
    EVP_PKEY_CTX* pctx = nullptr;
    bool ok = ctx && EVP_DigestVerifyInit_ex(ctx.get(), &pctx, alg_digest(alg), nullptr, nullptr,
                                             k.pkey.get(), nullptr) == 1;
    if (ok && (alg == Alg::PS256 || alg == Alg::PS384 || alg == Alg::PS512)) {
        ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1;
    }
    ok = ok && EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()),
                                sig.size(), data, input.size()) == 1;
    ERR_clear_error();
    return ok;
}

bool decode_object(std::string_view seg, std::string& buf, Json& out) {
    if (!base64url_decode(seg, buf)) return false;
    out = Json::parse(buf.begin(), buf.end(), nullptr, false);
    return !out.is_discarded() && out.is_object();
}

// A NumericDate claim: absent is fine; present must be a number (fractions truncated).
bool numeric_date(const Json& payload, const char* name, bool& has, int64_t& out) {
    auto it = payload.find(name);
    has = it != payload.end();
    if (!has) return true;
    if (it->is_number_unsigned()) {
        uint64_t u = it->get<uint64_t>();
        out = u > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(u);
        return true;
    }
    if (it->is_number_integer()) {
        out = it->get<int64_t>();
        return true;
    }
    if (it->is_number_float()) {
        double d = it->get<double>();
        if (!std::isfinite(d) || d > 9e18 || d < -9e18) return false;
        out = static_cast<int64_t>(d);
        return true;
    }
    return false;
}

}  // namespace

Error verify_token(std::string_view token, const KeySet& keys, AlgSet allowed, Token& out) {
    if (token.size() > kMaxTokenSize) return Error::TooLarge;
    size_t d1 = token.find('.');
    if (d1 == std::string_view::npos) return Error::Malformed;
    size_t d2 = token.find('.', d1 + 1);
    if (d2 == std::string_view::npos || token.find('.', d2 + 1) != std::string_view::npos) {
        return Error::Malformed;
    }
    std::string buf;
    if (!decode_object(token.substr(0, d1), buf, out.header)) return Error::Malformed;
    if (!decode_object(token.substr(d1 + 1, d2 - d1 - 1), buf, out.payload)) {
        return Error::Malformed;
    }
    std::string sig;
    if (!base64url_decode(token.substr(d2 + 1), sig)) return Error::Malformed;

    auto alg_it = out.header.find("alg");
    if (alg_it == out.header.end() || !alg_it->is_string() ||
        !parse_alg(alg_it->get_ref<const std::string&>(), out.alg)) {
        return Error::BadAlg;  // "none" included
    }
    // RFC 7515 4.1.11: extensions we do not understand must not be ignored.
    if (out.header.contains("crit")) return Error::BadAlg;
    if ((allowed & (1u << static_cast<unsigned>(out.alg))) == 0) return Error::AlgNotAllowed;

    bool has_exp = false;
    int64_t exp = 0;
    if (!numeric_date(out.payload, "exp", has_exp, exp)) return Error::BadTimeClaim;
    out.has_exp = has_exp;
    out.exp = exp;

    const std::string* kid = nullptr;
    auto kid_it = out.header.find("kid");
    if (kid_it != out.header.end()) {
        if (!kid_it->is_string()) return Error::Malformed;
        kid = &kid_it->get_ref<const std::string&>();
    }
    KeyKind kind = alg_key_kind(out.alg);
    std::string_view input = token.substr(0, d2);
    bool any = false;
    for (const Key& k : keys.keys()) {
        if (k.kind != kind) continue;  // never an RSA/EC key as an HMAC secret
        if (k.has_alg && k.alg != out.alg) continue;
        // A token's kid selects the keys with that kid; keys without a kid (a PEM file named
        // without one) serve any token, and a token without a kid may use any key.
        if (kid != nullptr && !k.kid.empty() && k.kid != *kid) continue;
        any = true;
        if (verify_with(k, out.alg, input, sig)) return Error::None;
    }
    return any ? Error::BadSignature : Error::NoKey;
}

Error check_times(const Token& t, int64_t now, int64_t leeway) {
    bool has = false;
    int64_t v = 0;
    if (t.has_exp && now - leeway >= t.exp) return Error::Expired;
    if (!numeric_date(t.payload, "nbf", has, v)) return Error::BadTimeClaim;
    if (has && now + leeway < v) return Error::NotYetValid;
    if (!numeric_date(t.payload, "iat", has, v)) return Error::BadTimeClaim;
    if (has && now + leeway < v) return Error::IssuedInFuture;
    return Error::None;
}

Error check_claims(const Token& t, const ClaimRules& rules) {
    if (!rules.issuer.empty()) {
        auto it = t.payload.find("iss");
        if (it == t.payload.end() || !it->is_string() ||
            it->get_ref<const std::string&>() != rules.issuer) {
            return Error::BadIssuer;
        }
    }
    if (!rules.audience.empty()) {
        auto it = t.payload.find("aud");
        bool match = false;
        if (it != t.payload.end()) {
            for (const std::string& a : rules.audience) {
                if (it->is_string() ? it->get_ref<const std::string&>() == a
                                    : it->is_array() && claims::contains(*it, a)) {
                    match = true;
                    break;
                }
            }
        }
        if (!match) return Error::BadAudience;
    }
    for (const Requirement& req : rules.require) {
        const Json* c = find_claim(t.payload, req.claim);
        if (c == nullptr || c->is_null()) return Error::MissingClaim;
        for (const std::string& v : req.values) {
            if (!claims::contains(*c, v)) return Error::ClaimMismatch;
        }
    }
    return Error::None;
}

std::string_view describe(Error e) {
    switch (e) {
        case Error::None:
            return "ok";
        case Error::TooLarge:
            return "token too large";
        case Error::Malformed:
            return "malformed token";
        case Error::BadAlg:
            return "unsupported or missing algorithm";
        case Error::AlgNotAllowed:
            return "algorithm not allowed";
        case Error::NoKey:
            return "no key for the token";
        case Error::BadSignature:
            return "invalid signature";
        case Error::Expired:
            return "token expired";
        case Error::NotYetValid:
            return "token not yet valid";
        case Error::IssuedInFuture:
            return "token issued in the future";
        case Error::BadTimeClaim:
            return "invalid exp, nbf or iat claim";
        case Error::BadIssuer:
            return "invalid issuer";
        case Error::BadAudience:
            return "invalid audience";
        case Error::MissingClaim:
            return "required claim missing";
        case Error::ClaimMismatch:
            return "required claim value missing";
    }
    return "error";
}

// ---- cache -------------------------------------------------------------------------------------

bool sha256(std::string_view data, Digest& out) {
    static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    static EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    unsigned int len = 0;
    return md != nullptr && ctx != nullptr && EVP_DigestInit_ex2(ctx, md, nullptr) == 1 &&
           EVP_DigestUpdate(ctx, data.data(), data.size()) == 1 &&
           EVP_DigestFinal_ex(ctx, out.data(), &len) == 1 && len == out.size();
}

std::shared_ptr<const Token> VerifyCache::find(const Digest& d, const KeySet* keys, int64_t now) {
    auto it = map_.find(d);
    if (it == map_.end()) return nullptr;
    auto e = it->second;
    if (e->keys != keys || now >= e->expires) {
        lru_.erase(e);
        map_.erase(it);
        return nullptr;
    }
    lru_.splice(lru_.begin(), lru_, e);
    return e->token;
}

void VerifyCache::insert(const Digest& d, const KeySet* keys, std::shared_ptr<const Token> token,
                         int64_t expires) {
    if (capacity_ == 0) return;
    auto it = map_.find(d);
    if (it != map_.end()) {
        lru_.erase(it->second);
        map_.erase(it);
    }
    while (map_.size() >= capacity_) {
        map_.erase(lru_.back().digest);
        lru_.pop_back();
    }
    lru_.push_front(Entry{d, keys, std::move(token), expires});
    map_.emplace(d, lru_.begin());
}

}  // namespace tollgate::jwt
