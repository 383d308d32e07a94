// CUDA's built-in vector types and dim3, for the host build of the kernel source (SIMT executor).
//
// Layout and alignment follow CUDA's vector_types.h, because kernels reinterpret buffers as float4/uint4
// for 16-byte loads and stores: a wrong alignment would let the host compiler assume something the device
// code does not guarantee. Everything lives in grpo_simt::cuda_api (made visible at global scope by simt.h)
// so that these definitions never share a mangled name with the real CUDA headers when both builds are
// linked into one binary.
#pragma once

namespace grpo_simt {
namespace cuda_api {

#define GRPO_SIMT_VEC1(name, T, A)                                               \
  struct alignas(A) name {                                                      \
    T x;                                                                        \
  };                                                                            \
  inline constexpr name make_##name(T x) { return name{x}; }
#define GRPO_SIMT_VEC2(name, T, A)                                              \
  struct alignas(A) name {                                                      \
    T x, y;                                                                     \
  };                                                                            \
  inline constexpr name make_##name(T x, T y) { return name{x, y}; }
#define GRPO_SIMT_VEC3(name, T, A)                                              \
  struct alignas(A) name {                                                      \
    T x, y, z;                                                                  \
  };                                                                            \
  inline constexpr name make_##name(T x, T y, T z) { return name{x, y, z}; }
#define GRPO_SIMT_VEC4(name, T, A)                                              \
  struct alignas(A) name {                                                      \
    T x, y, z, w;                                                               \
  };                                                                            \
  inline constexpr name make_##name(T x, T y, T z, T w) { return name{x, y, z, w}; }

GRPO_SIMT_VEC1(char1, signed char, 1)
GRPO_SIMT_VEC2(char2, signed char, 2)
GRPO_SIMT_VEC3(char3, signed char, 1)
GRPO_SIMT_VEC4(char4, signed char, 4)
GRPO_SIMT_VEC1(uchar1, unsigned char, 1)
GRPO_SIMT_VEC2(uchar2, unsigned char, 2)
GRPO_SIMT_VEC3(uchar3, unsigned char, 1)
GRPO_SIMT_VEC4(uchar4, unsigned char, 4)
GRPO_SIMT_VEC1(short1, short, 2)
GRPO_SIMT_VEC2(short2, short, 4)
GRPO_SIMT_VEC3(short3, short, 2)
GRPO_SIMT_VEC4(short4, short, 8)
GRPO_SIMT_VEC1(ushort1, unsigned short, 2)
GRPO_SIMT_VEC2(ushort2, unsigned short, 4)
GRPO_SIMT_VEC3(ushort3, unsigned short, 2)
GRPO_SIMT_VEC4(ushort4, unsigned short, 8)
GRPO_SIMT_VEC1(int1, int, 4)
GRPO_SIMT_VEC2(int2, int, 8)
GRPO_SIMT_VEC3(int3, int, 4)
GRPO_SIMT_VEC4(int4, int, 16)
GRPO_SIMT_VEC1(uint1, unsigned int, 4)
GRPO_SIMT_VEC2(uint2, unsigned int, 8)
GRPO_SIMT_VEC3(uint3, unsigned int, 4)
GRPO_SIMT_VEC4(uint4, unsigned int, 16)
GRPO_SIMT_VEC1(long1, long, alignof(long))
GRPO_SIMT_VEC2(long2, long, 2 * alignof(long))
GRPO_SIMT_VEC1(ulong1, unsigned long, alignof(unsigned long))
GRPO_SIMT_VEC2(ulong2, unsigned long, 2 * alignof(unsigned long))
GRPO_SIMT_VEC1(longlong1, long long, 8)
GRPO_SIMT_VEC2(longlong2, long long, 16)
GRPO_SIMT_VEC4(longlong4, long long, 16)
GRPO_SIMT_VEC1(ulonglong1, unsigned long long, 8)
GRPO_SIMT_VEC2(ulonglong2, unsigned long long, 16)
GRPO_SIMT_VEC4(ulonglong4, unsigned long long, 16)
GRPO_SIMT_VEC1(float1, float, 4)
GRPO_SIMT_VEC2(float2, float, 8)
GRPO_SIMT_VEC3(float3, float, 4)
GRPO_SIMT_VEC4(float4, float, 16)
GRPO_SIMT_VEC1(double1, double, 8)
GRPO_SIMT_VEC2(double2, double, 16)
GRPO_SIMT_VEC4(double4, double, 16)

#undef GRPO_SIMT_VEC1
#undef GRPO_SIMT_VEC2
#undef GRPO_SIMT_VEC3
#undef GRPO_SIMT_VEC4

// CUDA's dim3: unspecified components default to 1, and it converts to and from uint3 (threadIdx and
// blockIdx are uint3, blockDim and gridDim are dim3).
struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};

static_assert(sizeof(float4) == 16 && alignof(float4) == 16, "float4 must match CUDA's layout");
static_assert(sizeof(uint4) == 16 && alignof(uint4) == 16, "uint4 must match CUDA's layout");
static_assert(sizeof(float2) == 8 && alignof(float2) == 8, "float2 must match CUDA's layout");
static_assert(sizeof(ushort4) == 8 && alignof(ushort4) == 8, "ushort4 must match CUDA's layout");
static_assert(sizeof(dim3) == 12, "dim3 must match CUDA's layout");

}  // namespace cuda_api
}  // namespace grpo_simt
