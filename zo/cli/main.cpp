// zo: zeroth-order fine-tuning runtime. Library errors arrive as zo::Error and leave here as one
// line on stderr with a non-zero exit; nothing below main() exits the process.
#include <cstdio>
#include <exception>

#include "core/blas.h"
#include "core/error.h"
#include "zo/cli/cli.h"
#include "zo/version.h"

namespace zo::cli {

DType parse_storage(const std::string& s) {
  if (s == "f32" || s == "float32") return DType::F32;
  if (s == "bf16" || s == "bfloat16") return DType::BF16;
  fail("--dtype must be f32 or bf16, not '{}'", s);
}

void print_json(const nlohmann::json& j) {
  std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  std::fflush(stdout);
}

}  // namespace zo::cli

int main(int argc, char** argv) {
  zo::blas_select_kernels(argc, argv);
  CLI::App app{"zo: zeroth-order (forward-only) fine-tuning of LLMs on CPU and GPU.\n"
               "MODEL is a Hugging Face folder (config.json + safetensors), a .gguf file, or 'default'\n"
               "(SmolLM2-135M-Instruct Q4_1, installed by tools/setup.sh)."};
  app.set_version_flag("--version", std::string("zo ") + zo::version());
  app.require_subcommand(1);
  zo::cli::Runner run;
  zo::cli::add_inspect(app, run);
  zo::cli::add_eval(app, run);
  zo::cli::add_generate(app, run);
  zo::cli::add_convert(app, run);
  zo::cli::add_train(app, run);
  zo::cli::add_bench(app, run);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "zo: error: %s (see zo --help)\n", e.what());
    return 2;
  }
  try {
    return run ? run() : 0;
  } catch (const zo::Error& e) {
    std::fprintf(stderr, "zo: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "zo: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "zo: error: %s\n", e.what());
    return 1;
  }
}
