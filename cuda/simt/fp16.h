// __half and __nv_bfloat16 for the host build of the kernel source (SIMT executor).
//
// The host build must not depend on the CUDA toolkit, so these are written from the IEEE 754 rules and
// CUDA's documented behaviour, not taken from cuda_fp16.h / cuda_bf16.h. What must hold, and what
// cuda/simt/selftest.cu checks exhaustively against an independent reference:
//   - float/double/integer -> half/bf16 rounds exactly once (no double rounding through an intermediate
//     format), to nearest-even by default; _rz/_rd/_ru variants round toward zero/-inf/+inf;
//   - any NaN input gives CUDA's canonical NaN 0x7FFF (the sign and payload are dropped, as on the device);
//   - half -> float is exact and gives the canonical float NaN 0x7FFFFFFF for any half NaN;
//     bf16 -> float is the 16-bit shift (exact, NaN payload kept), as CUDA's conversion is.
// Arithmetic on half/bf16 converts to float, computes and rounds back once. That is correctly rounded:
// a float result carries at least 2p+2 bits for p = 11 (half) and p = 8 (bf16), so rounding twice through
// float cannot differ from rounding once for +, -, *, / (the double-rounding bound).
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>

#include "types.h"

namespace grpo_simt {
namespace detail {

enum class Round { Nearest, Zero, Down, Up };

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline uint64_t f64_bits(double d) {
  uint64_t u;
  std::memcpy(&u, &d, sizeof u);
  return u;
}

// Encodes the exact value (-1)^neg * mant * 2^exp in a 16-bit binary format with `m` fraction bits and
// normal exponents emin..emax, rounding once with mode `r`. One routine serves half and bf16 and every
// source type, so each conversion has a single rounding step and a single place to get it right.
inline uint16_t encode16(bool neg, uint64_t mant, int exp, int m, int emin, int emax, Round r) {
  const uint32_t sign = neg ? 0x8000u : 0u;
  const uint32_t inf = static_cast<uint32_t>((emax + emax + 1) << m);  // exponent field all ones
  const uint32_t max_finite = inf - 1u;
  if (mant == 0) return static_cast<uint16_t>(sign);
  const int msb = 63 - __builtin_clzll(mant);
  const int lead = msb + exp;                    // exponent of the leading bit
  int q = (lead < emin ? emin : lead) - m;       // exponent of one unit in the last place here
  const int drop = q - exp;                      // low bits of mant below that unit
  uint64_t n;
  if (drop <= 0) {
    n = mant << (-drop);  // exact; n < 2^(m+1) so the shift is at most m bits
  } else {
    uint64_t rest;
    bool above_half, at_half;
    if (drop >= 64) {
      n = 0;
      rest = mant;
      above_half = drop == 64 && rest > (1ull << 63);
      at_half = drop == 64 && rest == (1ull << 63);
    } else {
      n = mant >> drop;
      rest = mant & ((1ull << drop) - 1);
      const uint64_t half = 1ull << (drop - 1);
      above_half = rest > half;
      at_half = rest == half;
    }
    bool up = false;
    switch (r) {
      case Round::Nearest: up = above_half || (at_half && (n & 1)); break;
      case Round::Zero: up = false; break;
      case Round::Up: up = !neg && rest != 0; break;
      case Round::Down: up = neg && rest != 0; break;
    }
    n += up ? 1 : 0;
  }
  if (n >> (m + 1)) {  // rounding carried into the next binade
    n >>= 1;
    q += 1;
  }
  if (n == 0) return static_cast<uint16_t>(sign);
  if (n < (1ull << m)) return static_cast<uint16_t>(sign | static_cast<uint32_t>(n));  // subnormal
  const int e = q + m;
  if (e > emax) {
    const bool to_inf = r == Round::Nearest || (r == Round::Up && !neg) || (r == Round::Down && neg);
    return static_cast<uint16_t>(sign | (to_inf ? inf : max_finite));
  }
  const int bias = emax;
  return static_cast<uint16_t>(sign | (static_cast<uint32_t>(e + bias) << m) |
                               static_cast<uint32_t>(n - (1ull << m)));
}

constexpr int kHalfM = 10, kHalfEmin = -14, kHalfEmax = 15;
constexpr int kBf16M = 7, kBf16Emin = -126, kBf16Emax = 127;
constexpr uint16_t kCanonicalNaN16 = 0x7FFF;

inline uint16_t f32_to_16(float f, int m, int emin, int emax, Round r) {
  const uint32_t u = f32_bits(f);
  const bool neg = (u >> 31) != 0;
  const uint32_t e = (u >> 23) & 0xFF, frac = u & 0x7FFFFF;
  if (e == 0xFF) {
    if (frac != 0) return kCanonicalNaN16;
    return static_cast<uint16_t>((neg ? 0x8000u : 0u) | static_cast<uint32_t>((emax + emax + 1) << m));
  }
  if (e == 0) return encode16(neg, frac, -149, m, emin, emax, r);
  return encode16(neg, frac | 0x800000u, static_cast<int>(e) - 150, m, emin, emax, r);
}

inline uint16_t f64_to_16(double d, int m, int emin, int emax, Round r) {
  const uint64_t u = f64_bits(d);
  const bool neg = (u >> 63) != 0;
  const uint64_t e = (u >> 52) & 0x7FF, frac = u & ((1ull << 52) - 1);
  if (e == 0x7FF) {
    if (frac != 0) return kCanonicalNaN16;
    return static_cast<uint16_t>((neg ? 0x8000u : 0u) | static_cast<uint32_t>((emax + emax + 1) << m));
  }
  if (e == 0) return encode16(neg, frac, -1074, m, emin, emax, r);
  return encode16(neg, frac | (1ull << 52), static_cast<int>(e) - 1075, m, emin, emax, r);
}

inline uint16_t i64_to_16(long long v, int m, int emin, int emax, Round r) {
  const bool neg = v < 0;
  const uint64_t mag = neg ? (~static_cast<uint64_t>(v) + 1u) : static_cast<uint64_t>(v);
  return encode16(neg, mag, 0, m, emin, emax, r);
}
inline uint16_t u64_to_16(unsigned long long v, int m, int emin, int emax, Round r) {
  return encode16(false, v, 0, m, emin, emax, r);
}

// Float -> bf16 to nearest-even is on every hot path of the kernels (bf16 logits, bf16 gradients), so it
// gets the classic carry trick: adding 0x7FFF plus the kept LSB rounds the dropped 16 bits to
// nearest-even, and a carry out of the fraction correctly bumps the exponent (up to infinity).
inline uint16_t f32_to_bf16_rn(float f) {
  const uint32_t u = f32_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return kCanonicalNaN16;
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

inline float half_bits_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1F, frac = h & 0x3FFu;
  if (e == 0x1F) return f32_from_bits(frac != 0 ? 0x7FFFFFFFu : (sign | 0x7F800000u));
  if (e == 0) {
    if (frac == 0) return f32_from_bits(sign);
    const int msb = 31 - __builtin_clz(frac);  // value = frac * 2^-24, leading bit at 2^(msb-24)
    const uint32_t exp_field = static_cast<uint32_t>(msb - 24 + 127);
    const uint32_t frac_field = (frac << (23 - msb)) & 0x7FFFFFu;
    return f32_from_bits(sign | (exp_field << 23) | frac_field);
  }
  return f32_from_bits(sign | ((e + 112u) << 23) | (frac << 13));
}

inline float bf16_bits_to_f32(uint16_t b) { return f32_from_bits(static_cast<uint32_t>(b) << 16); }

// Float -> integer conversions in CUDA saturate out-of-range values and give 0 for NaN.
template <typename I>
inline I float_to_int_sat(float f, Round r) {
  if (f != f) return 0;
  const double d = static_cast<double>(f);
  double t;
  switch (r) {
    case Round::Zero: t = __builtin_trunc(d); break;
    case Round::Down: t = __builtin_floor(d); break;
    case Round::Up: t = __builtin_ceil(d); break;
    default: {  // nearest-even without depending on the thread's floating-point rounding mode
      t = __builtin_floor(d);
      const double frac = d - t;
      if (frac > 0.5 || (frac == 0.5 && __builtin_fmod(t, 2.0) != 0.0)) t += 1.0;
    }
  }
  // max() of a 64-bit type rounds up to 2^63 or 2^64 as a double, so ">=" is the exact saturation test.
  if (t <= static_cast<double>(std::numeric_limits<I>::min())) return std::numeric_limits<I>::min();
  if (t >= static_cast<double>(std::numeric_limits<I>::max())) return std::numeric_limits<I>::max();
  return static_cast<I>(t);
}

}  // namespace detail

namespace cuda_api {

struct __half_raw {
  unsigned short x;
};
struct __half2_raw {
  unsigned short x, y;
};
struct __nv_bfloat16_raw {
  unsigned short x;
};
struct __nv_bfloat162_raw {
  unsigned short x, y;
};

struct __half;
struct __nv_bfloat16;
__half __float2half_rn(float f);
__nv_bfloat16 __float2bfloat16_rn(float f);

// The implicit conversions mirror CUDA's defaults (no __CUDA_NO_HALF_CONVERSIONS__), so code that
// compiles with nvcc compiles here and picks the same overloads.
struct alignas(2) __half {
  unsigned short __x;

  __half() = default;
  constexpr __half(const __half_raw& r) : __x(r.x) {}
  __half(float f) : __x(detail::f32_to_16(f, detail::kHalfM, detail::kHalfEmin, detail::kHalfEmax, detail::Round::Nearest)) {}
  __half(double d) : __x(detail::f64_to_16(d, detail::kHalfM, detail::kHalfEmin, detail::kHalfEmax, detail::Round::Nearest)) {}
  __half(short v) : __half(static_cast<long long>(v)) {}
  __half(unsigned short v) : __half(static_cast<unsigned long long>(v)) {}
  __half(int v) : __half(static_cast<long long>(v)) {}
  __half(unsigned int v) : __half(static_cast<unsigned long long>(v)) {}
  __half(long v) : __half(static_cast<long long>(v)) {}
  __half(unsigned long v) : __half(static_cast<unsigned long long>(v)) {}
  __half(long long v) : __x(detail::i64_to_16(v, detail::kHalfM, detail::kHalfEmin, detail::kHalfEmax, detail::Round::Nearest)) {}
  __half(unsigned long long v) : __x(detail::u64_to_16(v, detail::kHalfM, detail::kHalfEmin, detail::kHalfEmax, detail::Round::Nearest)) {}
  explicit __half(const __nv_bfloat16& b);

  __half& operator=(const __half_raw& r) { __x = r.x; return *this; }
  __half& operator=(float f) { return *this = __half(f); }
  __half& operator=(double d) { return *this = __half(d); }
  operator __half_raw() const { return __half_raw{__x}; }
  operator float() const { return detail::half_bits_to_f32(__x); }
  operator signed char() const { return detail::float_to_int_sat<signed char>(float(*this), detail::Round::Zero); }
  operator unsigned char() const { return detail::float_to_int_sat<unsigned char>(float(*this), detail::Round::Zero); }
  operator char() const { return static_cast<char>(detail::float_to_int_sat<signed char>(float(*this), detail::Round::Zero)); }
  operator short() const { return detail::float_to_int_sat<short>(float(*this), detail::Round::Zero); }
  operator unsigned short() const { return detail::float_to_int_sat<unsigned short>(float(*this), detail::Round::Zero); }
  operator int() const { return detail::float_to_int_sat<int>(float(*this), detail::Round::Zero); }
  operator unsigned int() const { return detail::float_to_int_sat<unsigned int>(float(*this), detail::Round::Zero); }
  operator long() const { return detail::float_to_int_sat<long>(float(*this), detail::Round::Zero); }
  operator unsigned long() const { return detail::float_to_int_sat<unsigned long>(float(*this), detail::Round::Zero); }
  operator long long() const { return detail::float_to_int_sat<long long>(float(*this), detail::Round::Zero); }
  operator unsigned long long() const { return detail::float_to_int_sat<unsigned long long>(float(*this), detail::Round::Zero); }
  operator bool() const { return (__x & 0x7FFFu) != 0; }
};

struct alignas(2) __nv_bfloat16 {
  unsigned short __x;

  __nv_bfloat16() = default;
  constexpr __nv_bfloat16(const __nv_bfloat16_raw& r) : __x(r.x) {}
  __nv_bfloat16(float f) : __x(detail::f32_to_bf16_rn(f)) {}
  __nv_bfloat16(double d) : __x(detail::f64_to_16(d, detail::kBf16M, detail::kBf16Emin, detail::kBf16Emax, detail::Round::Nearest)) {}
  __nv_bfloat16(short v) : __nv_bfloat16(static_cast<long long>(v)) {}
  __nv_bfloat16(unsigned short v) : __nv_bfloat16(static_cast<unsigned long long>(v)) {}
  __nv_bfloat16(int v) : __nv_bfloat16(static_cast<long long>(v)) {}
  __nv_bfloat16(unsigned int v) : __nv_bfloat16(static_cast<unsigned long long>(v)) {}
  __nv_bfloat16(long v) : __nv_bfloat16(static_cast<long long>(v)) {}
  __nv_bfloat16(unsigned long v) : __nv_bfloat16(static_cast<unsigned long long>(v)) {}
  __nv_bfloat16(long long v) : __x(detail::i64_to_16(v, detail::kBf16M, detail::kBf16Emin, detail::kBf16Emax, detail::Round::Nearest)) {}
  __nv_bfloat16(unsigned long long v) : __x(detail::u64_to_16(v, detail::kBf16M, detail::kBf16Emin, detail::kBf16Emax, detail::Round::Nearest)) {}
  explicit __nv_bfloat16(const __half& h) : __nv_bfloat16(static_cast<float>(h)) {}

  __nv_bfloat16& operator=(const __nv_bfloat16_raw& r) { __x = r.x; return *this; }
  __nv_bfloat16& operator=(float f) { return *this = __nv_bfloat16(f); }
  __nv_bfloat16& operator=(double d) { return *this = __nv_bfloat16(d); }
  operator __nv_bfloat16_raw() const { return __nv_bfloat16_raw{__x}; }
  operator float() const { return detail::bf16_bits_to_f32(__x); }
  operator signed char() const { return detail::float_to_int_sat<signed char>(float(*this), detail::Round::Zero); }
  operator unsigned char() const { return detail::float_to_int_sat<unsigned char>(float(*this), detail::Round::Zero); }
  operator char() const { return static_cast<char>(detail::float_to_int_sat<signed char>(float(*this), detail::Round::Zero)); }
  operator short() const { return detail::float_to_int_sat<short>(float(*this), detail::Round::Zero); }
  operator unsigned short() const { return detail::float_to_int_sat<unsigned short>(float(*this), detail::Round::Zero); }
  operator int() const { return detail::float_to_int_sat<int>(float(*this), detail::Round::Zero); }
  operator unsigned int() const { return detail::float_to_int_sat<unsigned int>(float(*this), detail::Round::Zero); }
  operator long() const { return detail::float_to_int_sat<long>(float(*this), detail::Round::Zero); }
  operator unsigned long() const { return detail::float_to_int_sat<unsigned long>(float(*this), detail::Round::Zero); }
  operator long long() const { return detail::float_to_int_sat<long long>(float(*this), detail::Round::Zero); }
  operator unsigned long long() const { return detail::float_to_int_sat<unsigned long long>(float(*this), detail::Round::Zero); }
  operator bool() const { return (__x & 0x7FFFu) != 0; }
};

inline __half::__half(const __nv_bfloat16& b) : __half(static_cast<float>(b)) {}

struct alignas(4) __half2 {
  __half x, y;
  __half2() = default;
  constexpr __half2(const __half& a, const __half& b) : x(a), y(b) {}
  constexpr __half2(const __half2_raw& r) : x(__half_raw{r.x}), y(__half_raw{r.y}) {}
  __half2& operator=(const __half2_raw& r) { x = __half_raw{r.x}; y = __half_raw{r.y}; return *this; }
  operator __half2_raw() const { return __half2_raw{x.__x, y.__x}; }
};

struct alignas(4) __nv_bfloat162 {
  __nv_bfloat16 x, y;
  __nv_bfloat162() = default;
  constexpr __nv_bfloat162(const __nv_bfloat16& a, const __nv_bfloat16& b) : x(a), y(b) {}
  constexpr __nv_bfloat162(const __nv_bfloat162_raw& r) : x(__nv_bfloat16_raw{r.x}), y(__nv_bfloat16_raw{r.y}) {}
  __nv_bfloat162& operator=(const __nv_bfloat162_raw& r) { x = __nv_bfloat16_raw{r.x}; y = __nv_bfloat16_raw{r.y}; return *this; }
  operator __nv_bfloat162_raw() const { return __nv_bfloat162_raw{x.__x, y.__x}; }
};

using half = __half;
using half2 = __half2;
using nv_bfloat16 = __nv_bfloat16;
using nv_bfloat162 = __nv_bfloat162;

static_assert(sizeof(__half) == 2 && alignof(__half) == 2, "__half layout");
static_assert(sizeof(__half2) == 4 && alignof(__half2) == 4, "__half2 layout");
static_assert(sizeof(__nv_bfloat16) == 2 && alignof(__nv_bfloat16) == 2, "__nv_bfloat16 layout");
static_assert(sizeof(__nv_bfloat162) == 4 && alignof(__nv_bfloat162) == 4, "__nv_bfloat162 layout");

// ---- conversions: half ----------------------------------------------------------------------------------
#define GRPO_SIMT_H(expr) __half(__half_raw{static_cast<unsigned short>(expr)})
#define GRPO_SIMT_HARGS detail::kHalfM, detail::kHalfEmin, detail::kHalfEmax

inline __half __float2half_rn(float f) { return GRPO_SIMT_H(detail::f32_to_16(f, GRPO_SIMT_HARGS, detail::Round::Nearest)); }
inline __half __float2half(float f) { return __float2half_rn(f); }
inline __half __float2half_rz(float f) { return GRPO_SIMT_H(detail::f32_to_16(f, GRPO_SIMT_HARGS, detail::Round::Zero)); }
inline __half __float2half_rd(float f) { return GRPO_SIMT_H(detail::f32_to_16(f, GRPO_SIMT_HARGS, detail::Round::Down)); }
inline __half __float2half_ru(float f) { return GRPO_SIMT_H(detail::f32_to_16(f, GRPO_SIMT_HARGS, detail::Round::Up)); }
inline __half __double2half(double d) { return GRPO_SIMT_H(detail::f64_to_16(d, GRPO_SIMT_HARGS, detail::Round::Nearest)); }
inline __half __int2half_rn(int v) { return GRPO_SIMT_H(detail::i64_to_16(v, GRPO_SIMT_HARGS, detail::Round::Nearest)); }
inline __half __uint2half_rn(unsigned v) { return GRPO_SIMT_H(detail::u64_to_16(v, GRPO_SIMT_HARGS, detail::Round::Nearest)); }
inline __half __short2half_rn(short v) { return GRPO_SIMT_H(detail::i64_to_16(v, GRPO_SIMT_HARGS, detail::Round::Nearest)); }
inline __half __ushort2half_rn(unsigned short v) { return GRPO_SIMT_H(detail::u64_to_16(v, GRPO_SIMT_HARGS, detail::Round::Nearest)); }
inline __half __ll2half_rn(long long v) { return GRPO_SIMT_H(detail::i64_to_16(v, GRPO_SIMT_HARGS, detail::Round::Nearest)); }
inline __half __ull2half_rn(unsigned long long v) { return GRPO_SIMT_H(detail::u64_to_16(v, GRPO_SIMT_HARGS, detail::Round::Nearest)); }
inline float __half2float(__half h) { return detail::half_bits_to_f32(h.__x); }
inline int __half2int_rz(__half h) { return detail::float_to_int_sat<int>(__half2float(h), detail::Round::Zero); }
inline int __half2int_rn(__half h) { return detail::float_to_int_sat<int>(__half2float(h), detail::Round::Nearest); }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline short __half_as_short(__half h) { return static_cast<short>(h.__x); }
inline __half __ushort_as_half(unsigned short u) { return GRPO_SIMT_H(u); }
inline __half __short_as_half(short s) { return GRPO_SIMT_H(s); }
inline __half2 __halves2half2(__half a, __half b) { return __half2(a, b); }
inline __half2 __floats2half2_rn(float a, float b) { return __half2(__float2half_rn(a), __float2half_rn(b)); }
inline __half2 __float2half2_rn(float a) { return __half2(__float2half_rn(a), __float2half_rn(a)); }
inline __half2 __float22half2_rn(float2 f) { return __floats2half2_rn(f.x, f.y); }
inline float2 __half22float2(__half2 h) { return float2{__half2float(h.x), __half2float(h.y)}; }
inline __half __low2half(__half2 h) { return h.x; }
inline __half __high2half(__half2 h) { return h.y; }
inline float __low2float(__half2 h) { return __half2float(h.x); }
inline float __high2float(__half2 h) { return __half2float(h.y); }
inline __half2 __half2half2(__half h) { return __half2(h, h); }
inline __half2 __lows2half2(__half2 a, __half2 b) { return __half2(a.x, b.x); }
inline __half2 __highs2half2(__half2 a, __half2 b) { return __half2(a.y, b.y); }
inline __half2 make_half2(__half a, __half b) { return __half2(a, b); }

// ---- conversions: bf16 ----------------------------------------------------------------------------------
#define GRPO_SIMT_B(expr) __nv_bfloat16(__nv_bfloat16_raw{static_cast<unsigned short>(expr)})
#define GRPO_SIMT_BARGS detail::kBf16M, detail::kBf16Emin, detail::kBf16Emax

inline __nv_bfloat16 __float2bfloat16_rn(float f) { return GRPO_SIMT_B(detail::f32_to_bf16_rn(f)); }
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
inline __nv_bfloat16 __float2bfloat16_rz(float f) { return GRPO_SIMT_B(detail::f32_to_16(f, GRPO_SIMT_BARGS, detail::Round::Zero)); }
inline __nv_bfloat16 __float2bfloat16_rd(float f) { return GRPO_SIMT_B(detail::f32_to_16(f, GRPO_SIMT_BARGS, detail::Round::Down)); }
inline __nv_bfloat16 __float2bfloat16_ru(float f) { return GRPO_SIMT_B(detail::f32_to_16(f, GRPO_SIMT_BARGS, detail::Round::Up)); }
inline __nv_bfloat16 __double2bfloat16(double d) { return GRPO_SIMT_B(detail::f64_to_16(d, GRPO_SIMT_BARGS, detail::Round::Nearest)); }
inline __nv_bfloat16 __int2bfloat16_rn(int v) { return GRPO_SIMT_B(detail::i64_to_16(v, GRPO_SIMT_BARGS, detail::Round::Nearest)); }
inline __nv_bfloat16 __uint2bfloat16_rn(unsigned v) { return GRPO_SIMT_B(detail::u64_to_16(v, GRPO_SIMT_BARGS, detail::Round::Nearest)); }
inline __nv_bfloat16 __short2bfloat16_rn(short v) { return GRPO_SIMT_B(detail::i64_to_16(v, GRPO_SIMT_BARGS, detail::Round::Nearest)); }
inline __nv_bfloat16 __ushort2bfloat16_rn(unsigned short v) { return GRPO_SIMT_B(detail::u64_to_16(v, GRPO_SIMT_BARGS, detail::Round::Nearest)); }
inline __nv_bfloat16 __ll2bfloat16_rn(long long v) { return GRPO_SIMT_B(detail::i64_to_16(v, GRPO_SIMT_BARGS, detail::Round::Nearest)); }
inline __nv_bfloat16 __ull2bfloat16_rn(unsigned long long v) { return GRPO_SIMT_B(detail::u64_to_16(v, GRPO_SIMT_BARGS, detail::Round::Nearest)); }
inline float __bfloat162float(__nv_bfloat16 b) { return detail::bf16_bits_to_f32(b.__x); }
inline int __bfloat162int_rz(__nv_bfloat16 b) { return detail::float_to_int_sat<int>(__bfloat162float(b), detail::Round::Zero); }
inline int __bfloat162int_rn(__nv_bfloat16 b) { return detail::float_to_int_sat<int>(__bfloat162float(b), detail::Round::Nearest); }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.__x; }
inline short __bfloat16_as_short(__nv_bfloat16 b) { return static_cast<short>(b.__x); }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return GRPO_SIMT_B(u); }
inline __nv_bfloat16 __short_as_bfloat16(short s) { return GRPO_SIMT_B(s); }
inline __nv_bfloat162 __halves2bfloat162(__nv_bfloat16 a, __nv_bfloat16 b) { return __nv_bfloat162(a, b); }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) { return __nv_bfloat162(__float2bfloat16_rn(a), __float2bfloat16_rn(b)); }
inline __nv_bfloat162 __float2bfloat162_rn(float a) { return __nv_bfloat162(__float2bfloat16_rn(a), __float2bfloat16_rn(a)); }
inline __nv_bfloat162 __float22bfloat162_rn(float2 f) { return __floats2bfloat162_rn(f.x, f.y); }
inline float2 __bfloat1622float2(__nv_bfloat162 b) { return float2{__bfloat162float(b.x), __bfloat162float(b.y)}; }
inline __nv_bfloat16 __low2bfloat16(__nv_bfloat162 b) { return b.x; }
inline __nv_bfloat16 __high2bfloat16(__nv_bfloat162 b) { return b.y; }
inline float __low2float(__nv_bfloat162 b) { return __bfloat162float(b.x); }
inline float __high2float(__nv_bfloat162 b) { return __bfloat162float(b.y); }
inline __nv_bfloat162 __bfloat162bfloat162(__nv_bfloat16 b) { return __nv_bfloat162(b, b); }
inline __nv_bfloat162 __lows2bfloat162(__nv_bfloat162 a, __nv_bfloat162 b) { return __nv_bfloat162(a.x, b.x); }
inline __nv_bfloat162 __highs2bfloat162(__nv_bfloat162 a, __nv_bfloat162 b) { return __nv_bfloat162(a.y, b.y); }
inline __nv_bfloat162 make_bfloat162(__nv_bfloat16 a, __nv_bfloat16 b) { return __nv_bfloat162(a, b); }
inline __nv_bfloat16 __float2bfloat16_from_half(__half h) { return __nv_bfloat16(h); }

// ---- arithmetic, comparisons, min/max -------------------------------------------------------------------
// One generator for both scalar types: compute in float, round once (see the header comment for why
// that is exact). Comparisons are IEEE (every comparison with NaN is false except !=).
#define GRPO_SIMT_FP16_OPS(T, P, TO_F, FROM_F, NAN_BITS)                                                    \
  inline T __##P##add(T a, T b) { return FROM_F(TO_F(a) + TO_F(b)); }                                      \
  inline T __##P##sub(T a, T b) { return FROM_F(TO_F(a) - TO_F(b)); }                                      \
  inline T __##P##mul(T a, T b) { return FROM_F(TO_F(a) * TO_F(b)); }                                      \
  inline T __##P##div(T a, T b) { return FROM_F(TO_F(a) / TO_F(b)); }                                      \
  inline T __##P##neg(T a) { T r = a; r.__x = static_cast<unsigned short>(a.__x ^ 0x8000u); return r; }     \
  inline T __##P##abs(T a) { T r = a; r.__x = static_cast<unsigned short>(a.__x & 0x7FFFu); return r; }    \
  inline bool __##P##eq(T a, T b) { return TO_F(a) == TO_F(b); }                                           \
  inline bool __##P##ne(T a, T b) { return TO_F(a) != TO_F(b); }                                           \
  inline bool __##P##lt(T a, T b) { return TO_F(a) < TO_F(b); }                                            \
  inline bool __##P##le(T a, T b) { return TO_F(a) <= TO_F(b); }                                           \
  inline bool __##P##gt(T a, T b) { return TO_F(a) > TO_F(b); }                                            \
  inline bool __##P##ge(T a, T b) { return TO_F(a) >= TO_F(b); }                                           \
  inline bool __##P##isnan(T a) { return (a.__x & 0x7FFFu) > (NAN_BITS); }                                  \
  inline int __##P##isinf(T a) { return (a.__x & 0x7FFFu) == (NAN_BITS) ? ((a.__x & 0x8000u) ? -1 : 1) : 0; } \
  inline T __##P##max(T a, T b) {                                                                           \
    if (__##P##isnan(a) && __##P##isnan(b)) { T r; r.__x = detail::kCanonicalNaN16; return r; }           \
    if (__##P##isnan(a)) return b;                                                                          \
    if (__##P##isnan(b)) return a;                                                                          \
    return TO_F(a) >= TO_F(b) ? a : b;                                                                      \
  }                                                                                                         \
  inline T __##P##min(T a, T b) {                                                                           \
    if (__##P##isnan(a) && __##P##isnan(b)) { T r; r.__x = detail::kCanonicalNaN16; return r; }           \
    if (__##P##isnan(a)) return b;                                                                          \
    if (__##P##isnan(b)) return a;                                                                          \
    return TO_F(a) <= TO_F(b) ? a : b;                                                                      \
  }                                                                                                         \
  inline T operator+(const T& a, const T& b) { return __##P##add(a, b); }                                 \
  inline T operator-(const T& a, const T& b) { return __##P##sub(a, b); }                                 \
  inline T operator*(const T& a, const T& b) { return __##P##mul(a, b); }                                 \
  inline T operator/(const T& a, const T& b) { return __##P##div(a, b); }                                 \
  inline T& operator+=(T& a, const T& b) { return a = a + b; }                                             \
  inline T& operator-=(T& a, const T& b) { return a = a - b; }                                             \
  inline T& operator*=(T& a, const T& b) { return a = a * b; }                                             \
  inline T& operator/=(T& a, const T& b) { return a = a / b; }                                             \
  inline T operator+(const T& a) { return a; }                                                             \
  inline T operator-(const T& a) { return __##P##neg(a); }                                                 \
  inline T& operator++(T& a) { return a = a + T(1.0f); }                                                   \
  inline T& operator--(T& a) { return a = a - T(1.0f); }                                                   \
  inline T operator++(T& a, int) { T old = a; ++a; return old; }                                           \
  inline T operator--(T& a, int) { T old = a; --a; return old; }                                           \
  inline bool operator==(const T& a, const T& b) { return __##P##eq(a, b); }                               \
  inline bool operator!=(const T& a, const T& b) { return __##P##ne(a, b); }                               \
  inline bool operator<(const T& a, const T& b) { return __##P##lt(a, b); }                                \
  inline bool operator<=(const T& a, const T& b) { return __##P##le(a, b); }                               \
  inline bool operator>(const T& a, const T& b) { return __##P##gt(a, b); }                                \
  inline bool operator>=(const T& a, const T& b) { return __##P##ge(a, b); }

GRPO_SIMT_FP16_OPS(__half, h, __half2float, __float2half_rn, 0x7C00u)
GRPO_SIMT_FP16_OPS(__nv_bfloat16, h, __bfloat162float, __float2bfloat16_rn, 0x7F80u)
#undef GRPO_SIMT_FP16_OPS

#define GRPO_SIMT_FP16X2_OPS(T2, T)                                                                          \
  inline T2 __hadd2(T2 a, T2 b) { return T2(__hadd(a.x, b.x), __hadd(a.y, b.y)); }                         \
  inline T2 __hsub2(T2 a, T2 b) { return T2(__hsub(a.x, b.x), __hsub(a.y, b.y)); }                         \
  inline T2 __hmul2(T2 a, T2 b) { return T2(__hmul(a.x, b.x), __hmul(a.y, b.y)); }                         \
  inline T2 __h2div(T2 a, T2 b) { return T2(__hdiv(a.x, b.x), __hdiv(a.y, b.y)); }                         \
  inline T2 __hneg2(T2 a) { return T2(__hneg(a.x), __hneg(a.y)); }                                          \
  inline T2 __habs2(T2 a) { return T2(__habs(a.x), __habs(a.y)); }                                          \
  inline T2 __hmax2(T2 a, T2 b) { return T2(__hmax(a.x, b.x), __hmax(a.y, b.y)); }                         \
  inline T2 __hmin2(T2 a, T2 b) { return T2(__hmin(a.x, b.x), __hmin(a.y, b.y)); }                         \
  inline bool __hbeq2(T2 a, T2 b) { return __heq(a.x, b.x) && __heq(a.y, b.y); }                           \
  inline bool __hbne2(T2 a, T2 b) { return __hne(a.x, b.x) && __hne(a.y, b.y); }                           \
  inline T2 operator+(const T2& a, const T2& b) { return __hadd2(a, b); }                                  \
  inline T2 operator-(const T2& a, const T2& b) { return __hsub2(a, b); }                                  \
  inline T2 operator*(const T2& a, const T2& b) { return __hmul2(a, b); }                                  \
  inline T2 operator/(const T2& a, const T2& b) { return __h2div(a, b); }                                  \
  inline T2& operator+=(T2& a, const T2& b) { return a = a + b; }                                          \
  inline T2& operator-=(T2& a, const T2& b) { return a = a - b; }                                          \
  inline T2& operator*=(T2& a, const T2& b) { return a = a * b; }                                          \
  inline T2& operator/=(T2& a, const T2& b) { return a = a / b; }                                          \
  inline T2 operator+(const T2& a) { return a; }                                                           \
  inline T2 operator-(const T2& a) { return __hneg2(a); }                                                  \
  inline bool operator==(const T2& a, const T2& b) { return __hbeq2(a, b); }                               \
  inline bool operator!=(const T2& a, const T2& b) { return __hbne2(a, b); }

GRPO_SIMT_FP16X2_OPS(__half2, __half)
GRPO_SIMT_FP16X2_OPS(__nv_bfloat162, __nv_bfloat16)
#undef GRPO_SIMT_FP16X2_OPS

#undef GRPO_SIMT_H
#undef GRPO_SIMT_HARGS
#undef GRPO_SIMT_B
#undef GRPO_SIMT_BARGS

}  // namespace cuda_api
}  // namespace grpo_simt
