// `tollgate key add|revoke|list`: manages an auth_key_store file (key_command.cpp).
#pragma once

namespace tollgate::auth_key {

// argv[0] is "key". Returns the process exit status (0 ok, 1 error; messages on stderr, the new
// key of `add` alone on stdout).
int key_command(int argc, char** argv);

}  // namespace tollgate::auth_key
