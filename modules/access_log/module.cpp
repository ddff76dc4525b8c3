// Placeholder while the module is written; replaced before commit.
#include "core/module.hpp"
namespace tollgate {
extern const Module access_log_module = {.name = "access_log"};
}
