// Graph nodes of reverse-mode autograd. Every differentiable op produces one output tensor and
// one Node; the node maps the gradient of that output to gradients of its inputs.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace sdpo {

class Node {
 public:
  Node(std::string name, std::vector<std::shared_ptr<Node>> next, std::vector<Shape> input_shapes);
  // Tears down long chains iteratively (a recursive destructor would overflow the stack).
  virtual ~Node();

  // Gradients for each input (undefined where an input needs none).
  virtual std::vector<Tensor> Apply(const Tensor& grad_output) = 0;
  // Frees what the node saved for backward (after a backward without retain_graph).
  virtual void Release() {}

  const std::string& name() const { return name_; }
  // One entry per input: the node its gradient flows to, or null.
  const std::vector<std::shared_ptr<Node>>& next() const { return next_; }
  const std::vector<Shape>& input_shapes() const { return input_shapes_; }

 private:
  std::string name_;
  std::vector<std::shared_ptr<Node>> next_;
  std::vector<Shape> input_shapes_;
};

using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;

// A node whose backward is a closure; the closure owns the saved tensors.
class FunctionNode final : public Node {
 public:
  FunctionNode(std::string name, std::vector<std::shared_ptr<Node>> next,
               std::vector<Shape> input_shapes, BackwardFn backward);
  std::vector<Tensor> Apply(const Tensor& grad_output) override;
  void Release() override { backward_ = nullptr; }

 private:
  BackwardFn backward_;
};

// Sink node of a leaf tensor: adds incoming gradients into the leaf's .grad.
class AccumulateGrad final : public Node {
 public:
  AccumulateGrad(std::shared_ptr<AutogradMeta> leaf, Shape shape);
  std::vector<Tensor> Apply(const Tensor& grad_output) override;

 private:
  std::shared_ptr<AutogradMeta> leaf_;
};

}  // namespace sdpo
