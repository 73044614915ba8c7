// Stand-in for torch/csrc/distributed/autograd/context/context.h, which Debian's libtorch-dev does not ship but
// c10d/reducer.hpp includes. The Reducer only holds a shared pointer to a distributed-autograd context (used by
// torch.distributed.rpc, never by this addon) and checks that its gradient callback type matches the context's,
// so the class needs nothing but that alias. A shared_ptr's layout does not depend on what it points to, so the
// Reducer's layout is the same as in the library that was built with the real header.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>

namespace torch {
namespace distributed {
namespace autograd {

class DistAutogradContext {
 public:
  using GradCallback = std::function<bool(at::Tensor&)>;
};

using ContextPtr = std::shared_ptr<DistAutogradContext>;

}  // namespace autograd
}  // namespace distributed
}  // namespace torch
