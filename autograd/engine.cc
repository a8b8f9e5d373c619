#include "autograd/engine.h"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "autograd/grad_mode.h"
#include "tensor/ops.h"

namespace sdpo {

namespace {

std::shared_ptr<Node> GradientEdge(const Tensor& t) {
  if (!t.requires_grad()) return nullptr;
  if (t.grad_fn()) return t.grad_fn();
  AutogradMeta& meta = t.autograd_meta();
  std::shared_ptr<Node> acc = meta.accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t.impl().autograd, t.shape());
    meta.accumulator = acc;
  }
  return acc;
}

}  // namespace

Tensor Detach(const Tensor& x) {
  return Tensor::FromStorage(x.storage(), x.shape(), x.strides(), x.offset(), x.dtype());
}

Tensor Record(const Tensor& out, const char* name, const std::vector<Tensor>& inputs,
              BackwardFn backward) {
  if (!GradEnabled()) return out;
  bool any = false;
  for (const Tensor& in : inputs) any = any || (in.defined() && in.requires_grad());
  if (!any) return out;
  static const std::unordered_set<std::string> known(DifferentiableOps().begin(),
                                                     DifferentiableOps().end());
  SDPO_CHECK(known.count(name) == 1, "autograd: op '", name,
             "' is not listed in DifferentiableOps() (add it and a gradient-check entry)");
  std::vector<std::shared_ptr<Node>> next;
  std::vector<Shape> shapes;
  for (const Tensor& in : inputs) {
    next.push_back(in.defined() ? GradientEdge(in) : nullptr);
    shapes.push_back(in.defined() ? in.shape() : Shape{});
  }
  Tensor result = Detach(out);  // a fresh impl: never attach a node to an input's impl
  AutogradMeta& meta = result.autograd_meta();
  meta.requires_grad = true;
  meta.grad_fn = std::make_shared<FunctionNode>(name, std::move(next), std::move(shapes),
                                                std::move(backward));
  return result;
}

void Backward(const Tensor& output, const Tensor& grad_output, bool retain_graph) {
  SDPO_CHECK(output.requires_grad(), "backward: the output ", output.str(),
             " does not require grad (no input requires grad, or it was computed under no-grad)");
  Tensor seed = grad_output;
  if (!seed.defined()) {
    SDPO_CHECK(output.numel() == 1, "backward: grad_output is required for a non-scalar output ",
               output.str());
    seed = Tensor::Full(output.shape(), 1.0, output.dtype(), output.device());
  }
  SDPO_CHECK(seed.shape() == output.shape(), "backward: grad_output ", seed.str(),
             " does not match output ", output.str());
  std::shared_ptr<Node> root = GradientEdge(output);

  // Dependency counts over the reachable graph (iterative DFS).
  std::unordered_map<Node*, int> deps;
  std::vector<Node*> stack = {root.get()};
  std::unordered_set<Node*> seen = {root.get()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const auto& nx : n->next()) {
      if (!nx) continue;
      ++deps[nx.get()];
      if (seen.insert(nx.get()).second) stack.push_back(nx.get());
    }
  }

  NoGradGuard no_grad;
  std::unordered_map<Node*, Tensor> pending;
  pending[root.get()] = seed;
  std::vector<Node*> ready = {root.get()};
  std::vector<std::shared_ptr<Node>> keep_alive = {root};
  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    Tensor g = std::move(pending[n]);
    pending.erase(n);
    // A node no gradient reached still releases its inputs' dependency counts.
    std::vector<Tensor> grads =
        g.defined() ? n->Apply(g) : std::vector<Tensor>(n->next().size());
    if (!retain_graph) n->Release();
    const auto& next = n->next();
    SDPO_CHECK(grads.size() == next.size() || next.empty(), "autograd: ", n->name(), " returned ",
               grads.size(), " gradients for ", next.size(), " inputs");
    for (size_t i = 0; i < next.size(); ++i) {
      Node* nx = next[i].get();
      if (!nx) continue;
      if (grads[i].defined()) {
        SDPO_CHECK(grads[i].shape() == n->input_shapes()[i], "autograd: ", n->name(),
                   " produced a gradient of shape ", ShapeStr(grads[i].shape()), " for input ", i,
                   " of shape ", ShapeStr(n->input_shapes()[i]));
        auto it = pending.find(nx);
        if (it == pending.end() || !it->second.defined()) {
          pending[nx] = grads[i];
        } else {
          it->second = ops::Add(it->second, grads[i]);
        }
      }
      if (--deps[nx] == 0) ready.push_back(nx);
    }
  }
}

}  // namespace sdpo
