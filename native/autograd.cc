// Autograd: backward passes, gradients, requires-grad flags and the grad mode.
#include "common.h"

namespace alexnet {

// backward(t, grad|null, retainGraph)
static Napi::Value Backward(const Napi::CallbackInfo& info) {
  const at::Tensor& t = T(info, 0);
  if (!t.requires_grad()) {
    throw ArgError("backward() on a tensor that does not require grad (no graph was recorded)");
  }
  c10::optional<at::Tensor> g = OptT(info, 1);
  if (!g && t.numel() != 1) {
    throw ArgError("backward() without a gradient needs a one-element tensor, got " + ShapeString(t));
  }
  bool retain = Present(info, 2) && Bool(info, 2);
  t.backward(g ? *g : at::Tensor(), retain);
  return info.Env().Undefined();
}

// grad(t) -> the gradient, or undefined when there is none
static Napi::Value Grad(const Napi::CallbackInfo& info) { return WrapMaybe(info.Env(), T(info, 0).grad()); }

static Napi::Value RequiresGrad(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), T(info, 0).requires_grad());
}

// setRequiresGrad(t, on): floating-point tensors only
static Napi::Value SetRequiresGrad(const Napi::CallbackInfo& info) {
  const at::Tensor& t = T(info, 0);
  bool on = Bool(info, 1);
  if (on && !at::isFloatingType(t.scalar_type())) {
    throw ArgError("only floating-point tensors can require grad, got " + ShapeString(t));
  }
  t.requires_grad_(on);
  return info.Env().Undefined();
}

// setGradEnabled(on) -> whether it was enabled before
static Napi::Value SetGradEnabled(const Napi::CallbackInfo& info) {
  bool prev = at::GradMode::is_enabled();
  at::GradMode::set_enabled(Bool(info, 0));
  return Napi::Boolean::New(info.Env(), prev);
}

// zeroGrad(params): drops the gradients (set_to_none semantics)
static Napi::Value ZeroGrad(const Napi::CallbackInfo& info) {
  for (const at::Tensor& p : TList(info, 0)) p.mutable_grad().reset();
  return info.Env().Undefined();
}

// gradsFinite(params): false when any gradient holds NaN or infinity
static Napi::Value GradsFinite(const Napi::CallbackInfo& info) {
  at::NoGradGuard ng;
  for (const at::Tensor& p : TList(info, 0)) {
    if (HasGrad(p) && !at::isfinite(p.grad()).all().item<bool>()) return Napi::Boolean::New(info.Env(), false);
  }
  return Napi::Boolean::New(info.Env(), true);
}

void RegisterAutograd(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "backward", Backward);
  Export(env, exports, "grad", Grad);
  Export(env, exports, "requiresGrad", RequiresGrad);
  Export(env, exports, "setRequiresGrad", SetRequiresGrad);
  Export(env, exports, "setGradEnabled", SetGradEnabled);
  Export(env, exports, "zeroGrad", ZeroGrad);
  Export(env, exports, "gradsFinite", GradsFinite);
}

}  // namespace alexnet
