// The ssl module's server configuration and the SSL_CTX built from it at load, in the master
// (keys are read as root, before the workers drop privileges). Workers inherit the contexts
// through fork; a reload builds new ones, so renewed certificates are picked up while the old
// workers drain with the old contexts.
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/module.hpp"
#include "core/shared_zone.hpp"
#include "modules/ssl/ticket_keys.hpp"

namespace tollgate::ssl {

// Where a directive was written, for errors found when the context is built.
struct Where {
    std::string file;
    int line = 0;
};

struct PathAt {
    std::string path;
    Where where;
};

enum class VerifyClient : uint8_t { Off, On, Optional, OptionalNoCa };

// One cached session in the shared zone: its DER encoding, bounded.
struct SessionRecord {
    int64_t expires = 0;  // unix seconds
    uint32_t length = 0;
    unsigned char der[2040];
};

// The shared session cache of one zone (ssl_session_cache shared:NAME:SIZE).
struct SessionCache {
    std::shared_ptr<SharedZone> zone;
    SharedTable<SessionRecord> table;
    bool usable = false;
};

struct SessionCacheSpec {
    enum class Kind : uint8_t { Off, None, Builtin, Shared } kind = Kind::None;
    long builtin_size = 20480;
    std::shared_ptr<SessionCache> shared;
};

struct SslServerConf : ModuleConf {
    ~SslServerConf() override;

    std::vector<PathAt> certificates;
    std::vector<PathAt> keys;
    std::optional<uint32_t> protocols;  // bit per version, kProto*
    std::optional<std::string> ciphers;
    std::vector<std::pair<std::string, std::string>> conf_commands;
    std::vector<Where> conf_command_where;
    std::optional<bool> prefer_server_ciphers;
    std::optional<std::string> ecdh_curve;
    Where ecdh_where;
    Where ciphers_where;
    std::optional<SessionCacheSpec> session_cache;
    std::optional<uint64_t> session_timeout_ms;
    std::optional<bool> session_tickets;
    std::vector<PathAt> ticket_key_files;
    std::optional<PathAt> client_certificate;
    std::optional<PathAt> trusted_certificate;
    std::optional<PathAt> crl;
    std::optional<VerifyClient> verify_client;
    Where verify_where;
    std::optional<int> verify_depth;
    std::optional<uint64_t> handshake_timeout_ms;

    // Built in the master at load; owned here.
    SSL_CTX* ctx = nullptr;
    std::vector<TicketKey> ticket_keys;
    std::string server_file;
    int server_line = 0;
};

inline constexpr uint32_t kProtoTLSv1 = 1u << 0;
inline constexpr uint32_t kProtoTLSv1_1 = 1u << 1;
inline constexpr uint32_t kProtoTLSv1_2 = 1u << 2;
inline constexpr uint32_t kProtoTLSv1_3 = 1u << 3;
inline constexpr uint32_t kProtoSSLv3 = 1u << 4;

}  // namespace tollgate::ssl
