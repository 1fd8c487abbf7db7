#pragma once
namespace zo {
const char* version();
}  // namespace zo
