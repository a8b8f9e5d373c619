// The backward pass: an iterative topological walk (no recursion, so deep graphs are safe).
#pragma once

#include <string>
#include <vector>

#include "autograd/node.h"
#include "tensor/tensor.h"

namespace sdpo {

// Accumulates d(output)/d(leaf) into every reachable leaf's .grad. `grad_output` defaults to
// 1 for a one-element output and is required otherwise. The graph's saved tensors are freed
// unless retain_graph.
void Backward(const Tensor& output, const Tensor& grad_output = Tensor(),
              bool retain_graph = false);

// Records `out` as produced by `name` from `inputs` when grad mode is on and some input requires
// grad: returns an alias of out carrying the new node. Otherwise returns out unchanged. `name`
// must be listed in DifferentiableOps() (the gradient-check harness covers every listed op).
Tensor Record(const Tensor& out, const char* name, const std::vector<Tensor>& inputs,
              BackwardFn backward);

// A tensor sharing data with x but outside any graph.
Tensor Detach(const Tensor& x);

// Every op name Record accepts.
const std::vector<std::string>& DifferentiableOps();

}  // namespace sdpo
