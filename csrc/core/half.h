// Scalar bf16 / f16 <-> f32 conversions (round to nearest even), for the few single values the host code
// reads or writes; the row kernels have vector versions of the same rounding.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace grpo {

inline float bitsToFloat(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint32_t floatToBits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

inline float bf16ToFloat(uint16_t h) { return bitsToFloat(static_cast<uint32_t>(h) << 16); }

inline uint16_t floatToBf16(float f) {
  uint32_t u = floatToBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0u;  // NaN stays a quiet NaN
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

inline float f16ToFloat(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t em = h & 0x7fffu;
  if (em >= 0x7c00u) return bitsToFloat(sign | 0x7f800000u | ((em & 0x3ffu) << 13));
  if (em < 0x0400u) {
    float v = static_cast<float>(em) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  return bitsToFloat(sign | ((em << 13) + ((127u - 15u) << 23)));
}

inline uint16_t floatToF16(float f) {
  const uint32_t x = floatToBits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u);
  if (ax >= 0x477ff000u) return sign | 0x7c00u;  // 65520 and up round to infinity
  if (ax < 0x38800000u) {                        // below 2^-14: an f16 subnormal, in units of 2^-24 (exact scaling)
    return sign | static_cast<uint16_t>(std::nearbyint(bitsToFloat(ax) * 16777216.0f));
  }
  return sign | static_cast<uint16_t>((ax - ((127u - 15u) << 23) + 0xfffu + ((ax >> 13) & 1u)) >> 13);
}

}  // namespace grpo
