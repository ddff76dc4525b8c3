// Placeholder while the module is written; replaced before commit.
#include "core/module.hpp"
namespace tollgate {
extern const Module static_module = {.name = "static"};
}
