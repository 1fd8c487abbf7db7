#include "zo/version.h"

namespace zo {
const char* version() { return "0.1.0"; }
}  // namespace zo
