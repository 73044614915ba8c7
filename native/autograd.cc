// Autograd, whole optimiser steps (one native call per step, not one per parameter), RNG and runtime settings.
#include "common.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>

#include <cmath>
#include <initializer_list>

namespace alexnet {

static bool HasGrad(const at::Tensor& p) { return p.grad().defined(); }

// One pass over memory per parameter for the common case (float32, contiguous, CPU): libtorch 1.13 has no fused
// CPU optimiser, and the op-by-op form reads and writes every parameter-sized buffer several times.
static bool Fusable(std::initializer_list<const at::Tensor*> ts) {
  for (const at::Tensor* t : ts) {
    if (!t->device().is_cpu() || t->scalar_type() != at::kFloat || !t->is_contiguous()) return false;
  }
  return true;
}

static constexpr int64_t kGrain = 1 << 15;

static void CheckSameLength(size_t a, size_t b, const char* what) {
  if (a != b) throw ArgError(std::string(what) + ": " + std::to_string(a) + " parameters but " +
                             std::to_string(b) + " state tensors");
}

void InitAutograd(Napi::Env env, Napi::Object exports) {
  // backward(t, grad|null, retainGraph)
  Export(env, exports, "backward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const at::Tensor& t = T(info, 0);
    if (!t.requires_grad()) throw ArgError("backward() on a tensor that does not require grad (no graph was recorded)");
    c10::optional<at::Tensor> g = OptT(info, 1);
    if (!g && t.numel() != 1) throw ArgError("backward() without a gradient needs a one-element tensor, got " + ShapeString(t));
    bool retain = Present(info, 2) && Bool(info, 2);
    t.backward(g ? *g : at::Tensor(), retain);
    return info.Env().Undefined();
  });
  Export(env, exports, "grad", [](const Napi::CallbackInfo& info) -> Napi::Value {
    return WrapMaybe(info.Env(), T(info, 0).grad());
  });
  Export(env, exports, "setRequiresGrad", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const at::Tensor& t = T(info, 0);
    bool on = Bool(info, 1);
    if (on && !at::isFloatingType(t.scalar_type())) {
      throw ArgError("only floating-point tensors can require grad, got " + ShapeString(t));
    }
    t.requires_grad_(on);
    return info.Env().Undefined();
  });
  Export(env, exports, "setGradEnabled", [](const Napi::CallbackInfo& info) -> Napi::Value {
    bool prev = at::GradMode::is_enabled();
    at::GradMode::set_enabled(Bool(info, 0));
    return Napi::Boolean::New(info.Env(), prev);
  });
  // zeroGrad(params): drops the gradients (set_to_none semantics)
  Export(env, exports, "zeroGrad", [](const Napi::CallbackInfo& info) -> Napi::Value {
    for (const at::Tensor& p : TList(info, 0)) p.mutable_grad().reset();
    return info.Env().Undefined();
  });
  // gradsFinite(params): false when any gradient holds NaN or infinity
  Export(env, exports, "gradsFinite", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::NoGradGuard ng;
    for (const at::Tensor& p : TList(info, 0)) {
      if (HasGrad(p) && !at::isfinite(p.grad()).all().item<bool>()) return Napi::Boolean::New(info.Env(), false);
    }
    return Napi::Boolean::New(info.Env(), true);
  });
  // unscaleGrads(params, invScale) -> true when every gradient is finite. Multiplies the gradients by invScale
  // (loss scaling for float16 training: PyTorch's GradScaler.unscale_), one device sync for the whole check.
  Export(env, exports, "unscaleGrads", [](const Napi::CallbackInfo& info) -> Napi::Value {
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
  });
  // setAutocast(device "cpu"|"cuda", enabled, dtype "bfloat16"|"float16") -> whether it was enabled before.
  // While enabled, ops that autocast lists (convolutions, matmuls) run in the lower precision.
  Export(env, exports, "setAutocast", [](const Napi::CallbackInfo& info) -> Napi::Value {
    std::string dev = Str(info, 0);
    bool on = Bool(info, 1);
    std::string dt = Str(info, 2);
    if (dev != "cpu" && dev != "cuda") throw ArgError("autocast device must be cpu or cuda, got '" + dev + "'");
    if (dt != "bfloat16" && dt != "float16") throw ArgError("autocast dtype must be bfloat16 or float16, got '" + dt + "'");
    at::ScalarType st = dt == "float16" ? at::kHalf : at::kBFloat16;
    bool prev;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    c10::DeviceType d = dev == "cuda" ? c10::DeviceType::CUDA : c10::DeviceType::CPU;
    prev = at::autocast::is_autocast_enabled(d);
    at::autocast::set_autocast_dtype(d, st);
    at::autocast::set_autocast_enabled(d, on);
#else
    if (dev == "cuda") {
      prev = at::autocast::is_enabled();
      at::autocast::set_autocast_gpu_dtype(st);
      at::autocast::set_enabled(on);
    } else {
      prev = at::autocast::is_cpu_enabled();
      at::autocast::set_autocast_cpu_dtype(st);
      at::autocast::set_cpu_enabled(on);
    }
#endif
    // Casts of the weights are cached while autocast is on; leaving it frees them (PyTorch does the same).
    if (!on) at::autocast::clear_cache();
    return Napi::Boolean::New(info.Env(), prev);
  });

  // sgdStep(params, momentumBuffers, lr, momentum, weightDecay, dampening, nesterov, form, firstStep)
  //   form "paper":   v <- momentum*v - weightDecay*lr*w - lr*g ;  w <- w + v
  //   form "pytorch": g' = g + weightDecay*w ; v <- momentum*v + (1-dampening)*g' (v = g' on the first step) ;
  //                   w <- w - lr*(nesterov ? g' + momentum*v : v)
  Export(env, exports, "sgdStep", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::NoGradGuard ng;
    std::vector<at::Tensor> ps = TList(info, 0);
    std::vector<at::Tensor> bufs = TList(info, 1);
    CheckSameLength(ps.size(), bufs.size(), "sgdStep");
    double lr = Num(info, 2), mom = Num(info, 3), wd = Num(info, 4), damp = Num(info, 5);
    bool nesterov = Bool(info, 6);
    std::string form = Str(info, 7);
    bool first = Bool(info, 8);
    if (form != "paper" && form != "pytorch") throw ArgError("unknown SGD form '" + form + "'");
    std::vector<at::Tensor> W, G, V;
    for (size_t i = 0; i < ps.size(); i++) {
      const at::Tensor& w = ps[i];
      if (!HasGrad(w)) continue;
      at::Tensor g = w.grad();
      at::Tensor& v = bufs[i];
      if (Fusable({&w, &g, &v}) && (form == "paper" || (!nesterov && mom != 0))) {
        float* pw = w.data_ptr<float>();
        const float* pg = g.data_ptr<float>();
        float* pv = v.data_ptr<float>();
        const float fm = static_cast<float>(mom), fwd = static_cast<float>(wd), flr = static_cast<float>(lr),
                    fd = static_cast<float>(1 - damp);
        if (form == "paper") {
          at::parallel_for(0, w.numel(), kGrain, [&](int64_t b, int64_t e) {
            for (int64_t k = b; k < e; k++) {
              const float vk = fm * pv[k] - fwd * flr * pw[k] - flr * pg[k];
              pv[k] = vk;
              pw[k] += vk;
            }
          });
        } else {
          const float keep = first ? 0.f : fm, take = first ? 1.f : fd;
          at::parallel_for(0, w.numel(), kGrain, [&](int64_t b, int64_t e) {
            for (int64_t k = b; k < e; k++) {
              const float vk = keep * pv[k] + take * (pg[k] + fwd * pw[k]);
              pv[k] = vk;
              pw[k] -= flr * vk;
            }
          });
        }
      } else {
        W.push_back(w);
        G.push_back(g);
        V.push_back(v);
      }
    }
    // Everything else (GPU tensors, other dtypes): multi-tensor ops, a few kernels for all parameters together
    // (torch.optim's foreach form) instead of a few per parameter.
    if (!W.empty()) {
      if (form == "paper") {
        at::_foreach_mul_(V, mom);
        at::_foreach_add_(V, W, -wd * lr);
        at::_foreach_add_(V, G, -lr);
        at::_foreach_add_(W, V);
      } else {
        std::vector<at::Tensor> D = wd != 0 ? at::_foreach_add(G, W, wd) : G;
        if (mom != 0) {
          if (first) {
            for (size_t i = 0; i < V.size(); i++) V[i].copy_(D[i]);
          } else {
            at::_foreach_mul_(V, mom);
            at::_foreach_add_(V, D, 1 - damp);
          }
          if (nesterov) D = at::_foreach_add(D, V, mom);
          else D = V;
        }
        at::_foreach_add_(W, D, -lr);
      }
    }
    return info.Env().Undefined();
  });

  // adamStep(params, expAvg, expAvgSq, step, lr, beta1, beta2, eps, weightDecay, decoupled)
  // step counts from 1; decoupled = AdamW (w <- w*(1 - lr*wd)), else L2 added to the gradient (Adam).
  Export(env, exports, "adamStep", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::NoGradGuard ng;
    std::vector<at::Tensor> ps = TList(info, 0);
    std::vector<at::Tensor> m = TList(info, 1);
    std::vector<at::Tensor> v = TList(info, 2);
    CheckSameLength(ps.size(), m.size(), "adamStep");
    CheckSameLength(ps.size(), v.size(), "adamStep");
    double step = Num(info, 3), lr = Num(info, 4), b1 = Num(info, 5), b2 = Num(info, 6), eps = Num(info, 7),
           wd = Num(info, 8);
    bool decoupled = Bool(info, 9);
    double bc1 = 1 - std::pow(b1, step), bc2 = 1 - std::pow(b2, step);
    std::vector<at::Tensor> W, G, M, V;
    for (size_t i = 0; i < ps.size(); i++) {
      const at::Tensor& w = ps[i];
      if (!HasGrad(w)) continue;
      at::Tensor g = w.grad();
      if (Fusable({&w, &g, &m[i], &v[i]})) {
        float* pw = w.data_ptr<float>();
        const float* pg = g.data_ptr<float>();
        float* pm = m[i].data_ptr<float>();
        float* pv = v[i].data_ptr<float>();
        const float fb1 = static_cast<float>(b1), fb2 = static_cast<float>(b2), feps = static_cast<float>(eps),
                    fwd = static_cast<float>(wd), step_size = static_cast<float>(lr / bc1),
                    inv_sqrt_bc2 = static_cast<float>(1 / std::sqrt(bc2)), decay = static_cast<float>(1 - lr * wd);
        // Branch-free inner loops (one per weight-decay mode) so that the compiler vectorises them.
        const int mode = fwd == 0 ? 0 : (decoupled ? 1 : 2);
        at::parallel_for(0, w.numel(), kGrain, [&](int64_t b, int64_t e) {
          if (mode == 1) {
            for (int64_t k = b; k < e; k++) pw[k] *= decay;
          }
          for (int64_t k = b; k < e; k++) {
            const float gk = mode == 2 ? pg[k] + fwd * pw[k] : pg[k];
            const float mk = fb1 * pm[k] + (1 - fb1) * gk;
            const float vk = fb2 * pv[k] + (1 - fb2) * gk * gk;
            pm[k] = mk;
            pv[k] = vk;
            pw[k] -= step_size * mk / (std::sqrt(vk) * inv_sqrt_bc2 + feps);
          }
        });
        continue;
      }
      W.push_back(w);
      G.push_back(g);
      M.push_back(m[i]);
      V.push_back(v[i]);
    }
    if (!W.empty()) {
      if (wd != 0) {
        if (decoupled) at::_foreach_mul_(W, 1 - lr * wd);
        else G = at::_foreach_add(G, W, wd);
      }
      at::_foreach_mul_(M, b1);
      at::_foreach_add_(M, G, 1 - b1);
      at::_foreach_mul_(V, b2);
      at::_foreach_addcmul_(V, G, G, 1 - b2);
      std::vector<at::Tensor> denom = at::_foreach_sqrt(V);
      at::_foreach_div_(denom, std::sqrt(bc2));
      at::_foreach_add_(denom, eps);
      at::_foreach_addcdiv_(W, M, denom, -lr / bc1);
    }
    return info.Env().Undefined();
  });

  // ---- RNG and runtime ----
  Export(env, exports, "manualSeed", [](const Napi::CallbackInfo& info) -> Napi::Value {
    torch::manual_seed(static_cast<uint64_t>(Int(info, 0)));
    return info.Env().Undefined();
  });
  Export(env, exports, "getRngState", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    return Wrap(info.Env(), gen.get_state());
  });
  Export(env, exports, "setRngState", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(T(info, 0));
    return info.Env().Undefined();
  });
  Export(env, exports, "setNumThreads", [](const Napi::CallbackInfo& info) -> Napi::Value {
    int64_t n = Int(info, 0);
    if (n < 1) throw ArgError("thread count must be >= 1");
    at::set_num_threads(static_cast<int>(n));
    return info.Env().Undefined();
  });
  Export(env, exports, "getNumThreads", [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Napi::Number::New(info.Env(), at::get_num_threads());
  });
  Export(env, exports, "setCudnnBenchmark", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::globalContext().setBenchmarkCuDNN(Bool(info, 0));
    return info.Env().Undefined();
  });
  Export(env, exports, "cudaSynchronize", [](const Napi::CallbackInfo& info) -> Napi::Value {
    if (torch::cuda::is_available()) torch::cuda::synchronize();
    return info.Env().Undefined();
  });
  Export(env, exports, "runtimeInfo", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Napi::Env e = info.Env();
    Napi::Object o = Napi::Object::New(e);
    o.Set("libtorchVersion", TORCH_VERSION);
    o.Set("cudaAvailable", torch::cuda::is_available());
    o.Set("cudaDeviceCount", static_cast<double>(torch::cuda::device_count()));
    o.Set("cudnnAvailable", torch::cuda::cudnn_is_available());
    o.Set("mkldnnAvailable", at::hasMKLDNN());
    o.Set("numThreads", at::get_num_threads());
    return o;
  });
}

}  // namespace alexnet
