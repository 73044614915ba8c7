// Element loops over dense CPU tensors, shared by the parts that write their own (optim.cc, nn.cc): parallel
// blocks on libtorch's threads, bfloat16 rounding, and the instruction-set clones.
#pragma once

#include <ATen/TensorIterator.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace alexnet {

// Elements per parallel task at least, and per block of a task (16 KB of float32: in L1).
constexpr int64_t kGrain = 1 << 15;
constexpr int64_t kBlock = 4096;

// Runs body(b, e) over the element offsets [0, numel) of the dense tensor `t` on libtorch's intra-op threads, in
// blocks of at most kBlock (element offsets: the same for tensors of the same sizes and strides). Not at::parallel_for:
// that is a header template whose loop is parallel only where the caller is compiled with OpenMP, and this addon is not
// (a second OpenMP runtime beside libtorch's would mean a second thread pool): the fused steps ran on one core, at half
// the memory bandwidth of two. TensorIterator's for_each is compiled inside libtorch, with its OpenMP; the chunk it
// hands over is found from the data pointer.
template <typename F>
inline void ParallelBlocks(const at::Tensor& t, const F& body) {
  const at::Tensor flat = t.as_strided({t.numel()}, {1});
  const char* base = static_cast<const char*>(flat.data_ptr());
  const int64_t size = static_cast<int64_t>(t.element_size());
  at::TensorIterator it = at::TensorIteratorConfig()
                              .set_check_mem_overlap(false)
                              .resize_outputs(false)
                              .check_all_same_dtype(false)
                              .add_borrowed_output(flat)
                              .build();
  it.for_each(
      [&](char** data, const int64_t* strides, int64_t n0, int64_t n1) {
        for (int64_t j = 0; j < n1; j++) {
          const int64_t begin = (data[0] + j * strides[1] - base) / size;
          for (int64_t b = begin; b < begin + n0; b += kBlock) body(b, std::min(begin + n0, b + kBlock));
        }
      },
      kGrain);
}

// bfloat16 with round-to-nearest-even, as c10::BFloat16(float) (NaN to the quiet NaN), branch-free to vectorise.
inline uint16_t ToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const uint16_t r = static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
  return f != f ? static_cast<uint16_t>(0x7FC0) : r;
}

// The float32 value of a bfloat16 (exact).
inline float FromBf16(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Element loops are compiled for AVX-512 and AVX2 as well as the baseline and picked by the CPU at load time
// (GCC's target_clones): these passes are memory-bound, and the baseline's SSE2 leaves the bfloat16 rounding
// scalar. Without floating-point contraction (ISO C++, GCC's default there) every version rounds alike.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define ALEXNET_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ALEXNET_CLONES
#endif

}  // namespace alexnet
