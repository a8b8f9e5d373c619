#include "autograd/node.h"

#include "autograd/grad_mode.h"
#include "tensor/ops.h"

namespace sdpo {

namespace {
thread_local bool grad_enabled = true;
}  // namespace

bool GradEnabled() { return grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(grad_enabled) { grad_enabled = false; }
NoGradGuard::~NoGradGuard() { grad_enabled = previous_; }
EnableGradGuard::EnableGradGuard() : previous_(grad_enabled) { grad_enabled = true; }
EnableGradGuard::~EnableGradGuard() { grad_enabled = previous_; }

Node::Node(std::string name, std::vector<std::shared_ptr<Node>> next,
           std::vector<Shape> input_shapes)
    : name_(std::move(name)), next_(std::move(next)), input_shapes_(std::move(input_shapes)) {}

Node::~Node() {
  std::vector<std::shared_ptr<Node>> stack = std::move(next_);
  while (!stack.empty()) {
    std::shared_ptr<Node> n = std::move(stack.back());
    stack.pop_back();
    if (n && n.use_count() == 1) {
      for (auto& child : n->next_) stack.push_back(std::move(child));
      n->next_.clear();
    }
  }
}

FunctionNode::FunctionNode(std::string name, std::vector<std::shared_ptr<Node>> next,
                           std::vector<Shape> input_shapes, BackwardFn backward)
    : Node(std::move(name), std::move(next), std::move(input_shapes)),
      backward_(std::move(backward)) {}

std::vector<Tensor> FunctionNode::Apply(const Tensor& grad_output) {
  SDPO_CHECK(backward_ != nullptr, "backward through ", name(),
             " a second time: its saved tensors were freed (pass retain_graph=true to the first "
             "backward)");
  return backward_(grad_output);
}

AccumulateGrad::AccumulateGrad(std::shared_ptr<AutogradMeta> leaf, Shape shape)
    : Node("accumulate_grad", {}, {std::move(shape)}), leaf_(std::move(leaf)) {}

std::vector<Tensor> AccumulateGrad::Apply(const Tensor& grad_output) {
  if (!leaf_->grad) {
    leaf_->grad = std::make_shared<Tensor>(ops::Clone(grad_output));
  } else {
    *leaf_->grad = ops::Add(*leaf_->grad, grad_output);
  }
  return {};
}

}  // namespace sdpo
