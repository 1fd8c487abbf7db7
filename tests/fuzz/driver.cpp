// A standalone driver for the fuzz targets when libFuzzer is not in use (g++ builds, CI).
// It feeds every file of the seed corpus, then a bounded number of deterministic mutations of them
// (bit flips, byte edits, truncations, splices), so a parser sees malformed input on every test run.
// With clang and -DZO_FUZZ=ON the same targets link against libFuzzer instead (coverage-guided).
//   usage: fuzz_x CORPUS_DIR [RUNS]
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR [RUNS]\n", argv[0]);
    return 2;
  }
  long runs = argc > 2 ? std::atol(argv[2]) : 2000;
  std::vector<std::vector<uint8_t>> seeds;
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator(argv[1], ec)) {
    if (!e.is_regular_file()) continue;
    std::ifstream f(e.path(), std::ios::binary);
    seeds.emplace_back(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  if (seeds.empty()) seeds.push_back({});
  for (auto& s : seeds) LLVMFuzzerTestOneInput(s.data(), s.size());
  std::mt19937_64 rng(12345);
  for (long r = 0; r < runs; r++) {
    std::vector<uint8_t> in = seeds[rng() % seeds.size()];
    int edits = 1 + int(rng() % 8);
    for (int k = 0; k < edits; k++) {
      switch (rng() % 6) {
        case 0:  // flip a bit
          if (!in.empty()) in[rng() % in.size()] ^= uint8_t(1u << (rng() % 8));
          break;
        case 1:  // set an interesting byte
          if (!in.empty()) {
            static const uint8_t kVals[] = {0, 1, 0x7f, 0x80, 0xff, '"', '{', '}', ',', ':', '[', ']'};
            in[rng() % in.size()] = kVals[rng() % sizeof(kVals)];
          }
          break;
        case 2:  // truncate
          if (!in.empty()) in.resize(rng() % in.size());
          break;
        case 3:  // insert random bytes
        {
          size_t pos = in.empty() ? 0 : rng() % (in.size() + 1);
          size_t n = 1 + rng() % 16;
          for (size_t i = 0; i < n; i++) in.insert(in.begin() + long(pos), uint8_t(rng()));
          break;
        }
        case 4:  // splice with another seed
        {
          auto& o = seeds[rng() % seeds.size()];
          if (!o.empty() && !in.empty()) {
            size_t a = rng() % in.size(), b = rng() % o.size();
            in.resize(a);
            in.insert(in.end(), o.begin() + long(b), o.end());
          }
          break;
        }
        case 5:  // overwrite 8 bytes with a large little-endian integer
          if (in.size() >= 8) {
            uint64_t v = (rng() % 2) ? ~0ull >> (rng() % 64) : rng();
            size_t pos = rng() % (in.size() - 7);
            for (int i = 0; i < 8; i++) in[pos + i] = uint8_t(v >> (8 * i));
          }
          break;
      }
    }
    LLVMFuzzerTestOneInput(in.data(), in.size());
  }
  std::printf("%s: %zu seeds + %ld mutated inputs, no crash\n", argv[0], seeds.size(), runs);
  return 0;
}
