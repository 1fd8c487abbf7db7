// Wire dtypes (core/wire.h) against PyTorch's casts (tests/data/wire/casts.safetensors, written by
// tools/gen_wire_fixtures.py): bf16 and f16 bits, fp8 E4M3 codes with a scale per group, and the
// value of every E4M3 code.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/wire.h"
#include "models/safetensors.h"

using namespace zo;

namespace {
template <typename T>
std::vector<T> read(const SafetensorsFile& f, const char* name) {
  const StTensor* t = f.find(name);
  EXPECT_NE(t, nullptr) << name;
  if (!t) return {};
  std::vector<T> v(t->nbytes / sizeof(T));
  std::memcpy(v.data(), t->data, t->nbytes);
  return v;
}
SafetensorsFile fixture() { return SafetensorsFile::open(std::string(ZO_TEST_DATA) + "/wire/casts.safetensors"); }
}  // namespace

TEST(Wire, EncodingsMatchTorchCasts) {
  auto f = fixture();
  auto x = read<float>(f, "x");
  const size_t n = x.size();
  ASSERT_GT(n, 3 * kWireGroup);
  auto bf = read<uint16_t>(f, "bf16"), hf = read<uint16_t>(f, "f16");
  auto q8 = read<uint8_t>(f, "fp8");
  auto sc = read<float>(f, "fp8_scales");
  ASSERT_EQ(sc.size(), wire_groups(n));
  std::vector<uint16_t> b(n), h(n);
  std::vector<uint8_t> q(n);
  std::vector<float> s(wire_groups(n));
  ASSERT_TRUE(wire_encode(WireDType::BF16, x.data(), n, b.data(), nullptr));
  ASSERT_TRUE(wire_encode(WireDType::F16, x.data(), n, h.data(), nullptr));
  ASSERT_TRUE(wire_encode(WireDType::FP8, x.data(), n, q.data(), s.data()));
  size_t bad_b = 0, bad_h = 0, bad_q = 0;
  for (size_t i = 0; i < n; i++) {
    bad_b += b[i] != bf[i];
    bad_h += h[i] != hf[i];
    bad_q += q[i] != q8[i];
    if (i < 20 && (b[i] != bf[i] || h[i] != hf[i] || q[i] != q8[i]))
      ADD_FAILURE() << "special value " << i << " = " << x[i] << ": bf16 " << b[i] << " vs " << bf[i] << ", f16 " << h[i]
                    << " vs " << hf[i] << ", fp8 " << int(q[i]) << " vs " << int(q8[i]);
  }
  EXPECT_EQ(bad_b, 0u);
  EXPECT_EQ(bad_h, 0u);
  EXPECT_EQ(bad_q, 0u);
  for (size_t g = 0; g < s.size(); g++) EXPECT_EQ(s[g], sc[g]) << "group " << g;
}

TEST(Wire, DecodersMatchTorchValues) {
  auto f = fixture();
  auto table = read<float>(f, "fp8_table");
  ASSERT_EQ(table.size(), 256u);
  for (int k = 0; k < 256; k++) {
    float v = wire_fp8_value(uint8_t(k));
    if (std::isnan(table[size_t(k)]))
      EXPECT_TRUE(std::isnan(v)) << k;
    else
      EXPECT_EQ(v, table[size_t(k)]) << "code " << k;
  }
  // Decoding torch's bits gives torch's values (f32 widening is exact): check against the f64
  // value of the bit pattern computed here from the IEEE layout.
  auto x = read<float>(f, "x");
  auto hf = read<uint16_t>(f, "f16");
  std::vector<float> d(x.size());
  wire_decode(WireDType::F16, hf.data(), hf.size(), nullptr, d.data());
  for (size_t i = 0; i < hf.size(); i++) {
    const int e = (hf[i] >> 10) & 31, m = hf[i] & 1023;
    double v = e == 0 ? std::ldexp(double(m), -24) : std::ldexp(1.0 + m / 1024.0, e - 15);
    if (hf[i] & 0x8000) v = -v;
    ASSERT_EQ(double(d[i]), v) << i;
  }
  // fp8 round trip: |w - w~| <= half an E4M3 step of the group's scaled value (2^-4 relative, or 2^-10 * scale
  // in the subnormal range).
  const size_t n = x.size();
  std::vector<uint8_t> q(n);
  std::vector<float> s(wire_groups(n)), w(n);
  wire_encode(WireDType::FP8, x.data(), n, q.data(), s.data());
  wire_decode(WireDType::FP8, q.data(), n, s.data(), w.data());
  for (size_t i = 0; i < n; i++) {
    const double sg = s[i / kWireGroup];
    const double tol = std::max(std::fabs(double(x[i])) * 0.0625, std::ldexp(sg, -10)) * (1 + 1e-6);
    ASSERT_LE(std::fabs(double(w[i]) - double(x[i])), tol) << i;
  }
}

TEST(Wire, Fp8SaturatesAsTorchDoes) {
  auto f = fixture();
  auto x = read<float>(f, "sat_x");
  auto want = read<uint8_t>(f, "sat_fp8");
  ASSERT_EQ(x.size(), want.size());
  ASSERT_FALSE(x.empty());
  for (size_t i = 0; i < x.size(); i++) EXPECT_EQ(int(f32_to_fp8_e4m3(x[i])), int(want[i])) << x[i];
}

TEST(Wire, Fp8SaturatesAndF16OverflowIsReported) {
  EXPECT_EQ(f32_to_fp8_e4m3(448.0f), 0x7e);
  EXPECT_EQ(f32_to_fp8_e4m3(1000.0f), 0x7e);
  EXPECT_EQ(f32_to_fp8_e4m3(-1e30f), 0xfe);
  EXPECT_EQ(f32_to_fp8_e4m3(std::nanf("")) & 0x7f, 0x7f);
  EXPECT_EQ(wire_fp8_value(0x7e), 448.0f);
  EXPECT_EQ(wire_fp8_value(0x01), 0.001953125f);  // 2^-9
  float big[2] = {1.0f, 70000.0f};
  uint16_t h[2];
  EXPECT_FALSE(wire_encode(WireDType::F16, big, 2, h, nullptr));
  // An all-zero group gets scale 1 and zero codes.
  std::vector<float> z(100, 0.0f);
  std::vector<uint8_t> q(100, 0xff);
  float s = 0;
  wire_encode(WireDType::FP8, z.data(), z.size(), q.data(), &s);
  EXPECT_EQ(s, 1.0f);
  for (uint8_t c : q) EXPECT_EQ(c, 0);
  EXPECT_EQ(parse_wire_dtype("fp8"), WireDType::FP8);
  EXPECT_THROW(parse_wire_dtype("int4"), std::exception);
}

// The array conversions (vectorized where the CPU allows) against the scalar ones, which the tests
// above hold to torch's casts: every sign and exponent (all 2^16 high halves of the f32 bits) with
// low halves at each rounding boundary bf16, f16 and fp8 can meet (2^k - 1, 2^k, 2^k + 1), plus others.
// Odd lengths reach the scalar tails too (for bf16, whose vector loop starts at dst's first 64-byte
// boundary, the 6-byte offset of its destination does).
TEST(Wire, ArrayConversionsMatchScalarOnEveryBoundary) {
  std::vector<uint32_t> lows = {0u, 0xffffu, 0x5555u, 0xaaaau, 0x1234u, 0xfedcu};
  for (int k = 0; k < 16; k++)
    for (int d = -1; d <= 1; d++) lows.push_back(uint32_t((1 << k) + d) & 0xffffu);
  std::vector<float> x;
  x.reserve(size_t(1) << 16);
  std::vector<uint8_t> q;
  std::vector<uint16_t> h, b;
  size_t bad_q = 0, bad_h = 0, bad_b = 0;
  for (uint32_t lo : lows) {
    x.clear();
    for (uint32_t hi = 0; hi < 0x10000u; hi++) {
      float f;
      const uint32_t u = (hi << 16) | lo;
      std::memcpy(&f, &u, 4);
      x.push_back(f);
    }
    x.push_back(1.0f);  // 65537 values: not a multiple of any vector width
    q.assign(x.size(), 0);
    h.assign(x.size(), 0);
    for (float scale : {1.0f, 0.375f}) {
      wire_fp8_codes(x.data(), x.size(), scale, q.data());
      for (size_t i = 0; i < x.size(); i++)
        if (q[i] != f32_to_fp8_e4m3(x[i] / scale) && bad_q++ < 5)
          ADD_FAILURE() << "fp8 of " << x[i] << " / " << scale << ": " << int(q[i]) << " vs "
                        << int(f32_to_fp8_e4m3(x[i] / scale));
    }
    wire_f16_codes(x.data(), x.size(), h.data());
    for (size_t i = 0; i < x.size(); i++)
      if (h[i] != f32_to_f16(x[i]) && bad_h++ < 5)
        ADD_FAILURE() << "f16 of bits " << std::hex << (uint32_t(i) << 16 | lo) << ": " << h[i] << " vs "
                      << f32_to_f16(x[i]);
    for (size_t shift : {size_t(0), size_t(3)}) {  // b.data() + 3: a 6-byte offset
      b.assign(x.size() + shift, 0);
      wire_bf16_codes(x.data(), x.size(), b.data() + shift);
      for (size_t i = 0; i < x.size(); i++)
        if (b[shift + i] != f32_to_bf16(x[i]) && bad_b++ < 5)
          ADD_FAILURE() << "bf16 of bits " << std::hex << (uint32_t(i) << 16 | lo) << ": " << b[shift + i] << " vs "
                        << f32_to_bf16(x[i]);
    }
  }
  EXPECT_EQ(bad_q, 0u);
  EXPECT_EQ(bad_h, 0u);
  EXPECT_EQ(bad_b, 0u);
  // Overflow is reported from the vector lanes and from the tail alike; NaN and infinity are not overflow.
  for (size_t at : {size_t(3), size_t(40)}) {
    std::vector<float> v(41, 1.0f);
    v[7] = std::nanf("");
    v[9] = INFINITY;
    std::vector<uint16_t> out(v.size());
    EXPECT_TRUE(wire_f16_codes(v.data(), v.size(), out.data()));
    v[at] = 65520.0f;  // rounds up past 65504
    EXPECT_FALSE(wire_f16_codes(v.data(), v.size(), out.data())) << at;
  }
}

// The fp8 group scale is amax / 448 with NaN ignored and 1 for an infinite amax, wherever the
// largest value sits (a vector lane or the scalar tail).
TEST(Wire, Fp8ScaleFindsTheLargestMagnitudeAnywhere) {
  for (size_t n : {size_t(5), size_t(37), size_t(100)})
    for (size_t at = 0; at < n; at++) {
      std::vector<float> v(n);
      for (size_t i = 0; i < n; i++) v[i] = 0.25f * float(i % 7) - 0.5f;  // |v| <= 1
      v[(at + 16) % n] = std::nanf("");  // a later vector, same lane (when n allows)
      v[at] = -3.5f;
      std::vector<uint8_t> q(n);
      float s = 0;
      wire_encode(WireDType::FP8, v.data(), n, q.data(), &s);
      ASSERT_EQ(s, 3.5f / 448.0f) << n << " " << at;
      EXPECT_EQ(q[at], 0xfe);  // -448
      v[at] = -INFINITY;
      wire_encode(WireDType::FP8, v.data(), n, q.data(), &s);
      ASSERT_EQ(s, 1.0f) << n << " " << at;
    }
}

// A group whose amax is positive but below 448 x 2^-150 (amax / 448 rounds to 0) is scaled by 1,
// not 0: it decodes to finite values (0 and the tiny ones' nearest e4m3, 0), where a zero scale
// made every code of the group 0 / 0 = NaN. A NaN of either sign comes back a NaN of that sign.
TEST(Wire, Fp8TinyGroupsStayFiniteAndNaNKeepsItsSign) {
  const size_t n = 40;  // a vector part and a scalar tail
  std::vector<float> v(n);
  for (size_t i = 0; i < n; i++) v[i] = (i % 3 == 0) ? 1e-44f : 0.0f;
  EXPECT_EQ(1e-44f / 448.0f, 0.0f);  // the case in point
  std::vector<uint8_t> q(n);
  std::vector<float> back(n);
  float s = 0;
  ASSERT_TRUE(wire_encode(WireDType::FP8, v.data(), n, q.data(), &s));
  EXPECT_EQ(s, 1.0f);
  wire_decode(WireDType::FP8, q.data(), n, &s, back.data());
  for (size_t i = 0; i < n; i++) EXPECT_EQ(back[i], 0.0f) << i;
  v[3] = std::nanf("");
  v[33] = -std::nanf("");
  v[7] = 0.5f;
  ASSERT_TRUE(wire_encode(WireDType::FP8, v.data(), n, q.data(), &s));
  EXPECT_EQ(s, 0.5f / 448.0f);
  EXPECT_EQ(q[3], 0x7f);
  EXPECT_EQ(q[33], 0xff);
  wire_decode(WireDType::FP8, q.data(), n, &s, back.data());
  EXPECT_TRUE(std::isnan(back[3]) && !std::signbit(back[3]));
  EXPECT_TRUE(std::isnan(back[33]) && std::signbit(back[33]));
  EXPECT_EQ(back[7], 0.5f);
}
