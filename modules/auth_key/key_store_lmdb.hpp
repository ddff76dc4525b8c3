// The LMDB form of an API key store: `auth_key_store lmdb:PATH` and `tollgate key ...
// --store lmdb:PATH`. One LMDB file (MDB_NOSUBDIR, PATH and PATH-lock), unnamed database, one
// entry per key: key = the 32-byte SHA-256, value = the record's line as in the text store
// ("HEX CONSUMER TIER [NAME=VALUE ...]", HEX repeating the entry's key). The master reads it
// whole at load, exactly as the text file (same parser, same reload on HUP); only `tollgate key`
// writes it, one transaction per change, so large stores need no file rewrite and concurrent
// writers are serialized by LMDB.
#pragma once

#include <string>
#include <vector>

#include "modules/auth_key/key_store.hpp"

namespace tollgate::auth_key {

// Reads every entry of the store at `path` as lines of text (in hash order) into `text`.
// `must_exist`: a missing file is an error (else it reads as empty). False with `error`.
bool lmdb_read_lines(const std::string& path, bool must_exist, std::string& text,
                     std::string& error);

// Stores `line` (a valid record line) under `hash`. `must_be_new`: refuse an existing hash.
// Creates the file (0640) when needed. False with `error`.
bool lmdb_put_line(const std::string& path, const Digest& hash, const std::string& line,
                   bool must_be_new, std::string& error);

}  // namespace tollgate::auth_key
