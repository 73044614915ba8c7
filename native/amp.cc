// Mixed precision: libtorch's thread-local autocast state and the gradient unscaling of loss scaling.
#include "common.h"

#include <ATen/autocast_mode.h>

namespace alexnet {

// Switches autocast for one device type to dtype `st` on or off; returns whether it was on before.
static bool SwitchAutocast(bool cuda, at::ScalarType st, bool on) {
  bool prev;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  c10::DeviceType d = cuda ? c10::DeviceType::CUDA : c10::DeviceType::CPU;
  prev = at::autocast::is_autocast_enabled(d);
  at::autocast::set_autocast_dtype(d, st);
  at::autocast::set_autocast_enabled(d, on);
#else
  if (cuda) {
    prev = at::autocast::is_enabled();
    at::autocast::set_autocast_gpu_dtype(st);
    at::autocast::set_enabled(on);
  } else {
    prev = at::autocast::is_cpu_enabled();
    at::autocast::set_autocast_cpu_dtype(st);
    at::autocast::set_cpu_enabled(on);
  }
#endif
  return prev;
}

// setAutocast(device "cpu"|"cuda", enabled, dtype "bfloat16"|"float16") -> whether it was enabled before.
// While enabled, ops that autocast lists (convolutions, matmuls) run in the lower precision.
static Napi::Value SetAutocast(const Napi::CallbackInfo& info) {
  std::string dev = Str(info, 0);
  bool on = Bool(info, 1);
  std::string dt = Str(info, 2);
  if (dev != "cpu" && dev != "cuda") throw ArgError("autocast device must be cpu or cuda, got '" + dev + "'");
  if (dt != "bfloat16" && dt != "float16") {
    throw ArgError("autocast dtype must be bfloat16 or float16, got '" + dt + "'");
  }
  bool prev = SwitchAutocast(dev == "cuda", dt == "float16" ? at::kHalf : at::kBFloat16, on);
  // Casts of the weights are cached while autocast is on; leaving it frees them (PyTorch does the same).
  if (!on) at::autocast::clear_cache();
  return Napi::Boolean::New(info.Env(), prev);
}

// unscaleGrads(params, invScale) -> true when every gradient is finite. Multiplies the gradients by invScale
// (loss scaling for float16 training: PyTorch's GradScaler.unscale_), one device sync for the whole check.
static Napi::Value UnscaleGrads(const Napi::CallbackInfo& info) {
  at::NoGradGuard ng;
  double inv = Num(info, 1);
  at::Tensor bad;
  for (const at::Tensor& p : TList(info, 0)) {
    if (!HasGrad(p)) continue;
    at::Tensor g = p.mutable_grad();
    at::Tensor nonfinite = at::isfinite(g).logical_not().any();
    bad = bad.defined() ? bad.logical_or(nonfinite) : nonfinite;
    g.mul_(inv);
  }
  return Napi::Boolean::New(info.Env(), !bad.defined() || !bad.item<bool>());
}

void RegisterAmp(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "setAutocast", SetAutocast);
  Export(env, exports, "unscaleGrads", UnscaleGrads);
}

}  // namespace alexnet
