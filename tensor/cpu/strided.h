// Strided iteration for CPU elementwise kernels: walks N operands of one shape row by row
// (innermost dim), after dropping size-1 dims and merging dims that are contiguous in every
// operand. Rows are split across the thread pool.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "tensor/tensor.h"
#include "tensor/thread_pool.h"

namespace sdpo::cpu {

template <size_t N>
struct StridedLayout {
  Shape shape;                          // collapsed
  std::array<Shape, N> strides;         // per operand, in elements
};

template <size_t N>
StridedLayout<N> Collapse(const Shape& shape, const std::array<const Shape*, N>& strides) {
  StridedLayout<N> out;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !out.shape.empty();
    for (size_t k = 0; k < N && merge; ++k) {
      merge = out.strides[k].back() == (*strides[k])[d] * shape[d];
    }
    if (merge) {
      out.shape.back() *= shape[d];
      for (size_t k = 0; k < N; ++k) out.strides[k].back() = (*strides[k])[d];
    } else {
      out.shape.push_back(shape[d]);
      for (size_t k = 0; k < N; ++k) out.strides[k].push_back((*strides[k])[d]);
    }
  }
  if (out.shape.empty()) {  // a single element
    out.shape.push_back(1);
    for (size_t k = 0; k < N; ++k) out.strides[k].push_back(1);
  }
  return out;
}

// Calls row(offsets, length, inner_strides) for every innermost row; offsets in elements
// relative to each operand's first element.
template <size_t N, typename RowFn>
void ForEachRow(const Shape& shape, const std::array<const Shape*, N>& strides, RowFn row) {
  for (int64_t s : shape) {
    if (s == 0) return;
  }
  StridedLayout<N> lay = Collapse<N>(shape, strides);
  const int64_t rank = static_cast<int64_t>(lay.shape.size());
  const int64_t len = lay.shape.back();
  int64_t rows = 1;
  for (int64_t d = 0; d + 1 < rank; ++d) rows *= lay.shape[d];
  std::array<int64_t, N> inner;
  for (size_t k = 0; k < N; ++k) inner[k] = lay.strides[k].back();
  int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(len, 1));
  ParallelFor(rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      std::array<int64_t, N> off{};
      int64_t rem = r;
      for (int64_t d = rank - 2; d >= 0; --d) {
        int64_t i = rem % lay.shape[d];
        rem /= lay.shape[d];
        for (size_t k = 0; k < N; ++k) off[k] += i * lay.strides[k][d];
      }
      row(off, len, inner);
    }
  });
}

}  // namespace sdpo::cpu
