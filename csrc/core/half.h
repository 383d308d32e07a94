// Scalar bf16 / f16 <-> f32 conversions (round to nearest even), for the few single values the host code
// reads or writes; the row kernels have vector versions of the same rounding.
#pragma once
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

}  // namespace grpo
