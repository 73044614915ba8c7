// Whole optimiser steps: one native call updates every parameter (not one call per parameter and op).
//
// Two paths. The common case (float32, contiguous, CPU) runs a fused loop, one pass over memory per parameter:
// libtorch 1.13 has no fused CPU optimiser, and the op-by-op form reads and writes every parameter-sized buffer
// several times (measured: the fused loop is 3x faster). Everything else (GPU tensors, other dtypes) goes through
// multi-tensor ops, a few kernels for all parameters together (torch.optim's foreach form).
//
// bf16 weight copies: under CPU bf16 autocast a training forward casts every float32 weight to bfloat16 (all 61M
// of torchvision AlexNet's, each step: 6 bytes of memory traffic a weight). Instead the linear and convolution
// layers (native/nn.cc) take a kept bfloat16 copy of the weight, which the fused step rewrites in its pass over the
// weight (2 bytes a weight). The copy is the same rounding as autocast's cast (nearest even), and it is valid while
// the weight's version counter says it is unchanged: the fused loops bump it, every in-place ATen op does too.
#include "common.h"
#include "kernels.h"

#include <ATen/autocast_mode.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <initializer_list>
#include <mutex>
#include <unordered_map>

namespace alexnet {

// float32 CPU tensors that are dense and laid out alike (contiguous, or all channels-last like a convolution's
// weight, its gradient and its state): element k of each is at the same offset, so one flat loop covers them all.
static bool Fusable(std::initializer_list<const at::Tensor*> ts) {
  const at::Tensor& first = **ts.begin();
  for (const at::Tensor* t : ts) {
    if (!t->device().is_cpu() || t->scalar_type() != at::kFloat || !t->is_non_overlapping_and_dense() ||
        t->sizes() != first.sizes() || t->strides() != first.strides())
      return false;
  }
  return true;
}

// ---- bf16 weight copies ------------------------------------------------------------------------------------
struct KeptCopy {
  // Weak: the entry never keeps a weight alive, and while it exists the weight's address cannot be reused.
  c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl> owner;
  at::Tensor copy;
  const void* data;
  int64_t version;
};

static std::mutex gKeptMu;
static std::unordered_map<const c10::TensorImpl*, KeptCopy> gKept;

// The entry of `w` when it is still its weight's (alive, same storage), else null.
static KeptCopy* FindKept(const at::Tensor& w) {
  auto it = gKept.find(w.unsafeGetTensorImpl());
  if (it == gKept.end()) return nullptr;
  KeptCopy& k = it->second;
  if (k.owner.expired() || k.data != w.data_ptr() || k.copy.sizes() != w.sizes() || k.copy.strides() != w.strides()) {
    gKept.erase(it);
    return nullptr;
  }
  return &k;
}

static void PruneKept() {
  for (auto it = gKept.begin(); it != gKept.end();) {
    it = it->second.owner.expired() ? gKept.erase(it) : std::next(it);
  }
}

// The autocast cast of a weight with the kept copy as its value: the gradient goes to the float32 weight, as from
// autocast's own cast (ToCopyBackward).
struct KeptCast : public torch::autograd::Function<KeptCast> {
  static at::Tensor forward(torch::autograd::AutogradContext*, const at::Tensor&, const at::Tensor& copy) {
    return copy.detach();
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*, torch::autograd::variable_list g) {
    return {g[0].to(at::kFloat), at::Tensor()};
  }
};

static bool CpuAutocastBf16() {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  return at::autocast::is_autocast_enabled(c10::DeviceType::CPU) &&
         at::autocast::get_autocast_dtype(c10::DeviceType::CPU) == at::kBFloat16;
#else
  return at::autocast::is_cpu_enabled() && at::autocast::get_autocast_cpu_dtype() == at::kBFloat16;
#endif
}

// ALEXNET_NO_KEPT_BF16=1 turns the copies off (autocast casts every call, as before): for A/B measurements.
static bool KeptCopiesOn() {
  static const bool on = [] {
    const char* v = std::getenv("ALEXNET_NO_KEPT_BF16");
    return !(v && std::string(v) == "1");
  }();
  return on;
}

at::Tensor KeptBf16(const at::Tensor& w) {
  if (!w.defined() || !KeptCopiesOn() || !CpuAutocastBf16() || !w.device().is_cpu() || w.scalar_type() != at::kFloat ||
      !w.is_leaf() || w.is_inference() || !w.is_non_overlapping_and_dense()) {
    return at::Tensor();
  }
  at::Tensor copy;
  {
    std::lock_guard<std::mutex> lock(gKeptMu);
    KeptCopy* k = FindKept(w);
    if (k && k->version == static_cast<int64_t>(w._version())) {
      copy = k->copy;
    } else {
      at::NoGradGuard ng;
      copy = w.detach().to(at::kBFloat16);
      if (!k) {
        if (gKept.size() >= 64) PruneKept();
        KeptCopy fresh{c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>(w.getIntrusivePtr()),
                       at::Tensor(), w.data_ptr(), 0};
        k = &gKept.emplace(w.unsafeGetTensorImpl(), std::move(fresh)).first->second;
      }
      k->copy = copy;
      k->version = static_cast<int64_t>(w._version());
    }
  }
  return copy;
}

at::Tensor AutocastWeight(const at::Tensor& w) {
  at::Tensor copy = KeptBf16(w);
  if (!copy.defined()) return w;
  return w.requires_grad() && at::GradMode::is_enabled() ? KeptCast::apply(w, copy) : copy;
}

c10::optional<at::Tensor> AutocastWeight(const c10::optional<at::Tensor>& w) {
  if (!w) return w;
  return AutocastWeight(*w);
}

// The kept copy of `w` to rewrite in a fused pass (null when there is none), and the version the weight will
// have after it: call BumpKept with it afterwards.
static uint16_t* KeptFor(const at::Tensor& w) {
  std::lock_guard<std::mutex> lock(gKeptMu);
  KeptCopy* k = FindKept(w);
  return k && k->version == static_cast<int64_t>(w._version()) ? reinterpret_cast<uint16_t*>(k->copy.data_ptr())
                                                               : nullptr;
}

// After a fused pass wrote `w` through its pointer: a new version, which the copy matches when the pass wrote it.
static void BumpKept(const at::Tensor& w, bool copyWritten) {
  w.unsafeGetTensorImpl()->bump_version();
  if (!copyWritten) return;
  std::lock_guard<std::mutex> lock(gKeptMu);
  KeptCopy* k = FindKept(w);
  if (k) k->version = static_cast<int64_t>(w._version());
}

static void CheckSameLength(size_t params, size_t state) {
  if (params != state) {
    throw ArgError(std::to_string(params) + " parameters but " + std::to_string(state) + " state tensors");
  }
}

// ---- SGD ---------------------------------------------------------------------------------------------------
//   form "paper":   v <- momentum*v - weightDecay*lr*w - lr*g ;  w <- w + v
//   form "pytorch": g' = g + weightDecay*w ; v <- momentum*v + (1-dampening)*g' (v = g' on the first step) ;
//                   w <- w - lr*(nesterov ? g' + momentum*v : v)
struct SgdOptions {
  double lr, momentum, weightDecay, dampening;
  bool nesterov, paper, firstStep;
};

static SgdOptions ReadSgdOptions(const Napi::CallbackInfo& info, size_t i) {
  Fields f(info, i);
  SgdOptions o;
  o.lr = f.Num("lr");
  o.momentum = f.Num("momentum");
  o.weightDecay = f.Num("weightDecay");
  o.dampening = f.Num("dampening");
  o.nesterov = f.Bool("nesterov");
  std::string form = f.Str("form");
  if (form != "paper" && form != "pytorch") throw ArgError("unknown SGD form '" + form + "'");
  o.paper = form == "paper";
  o.firstStep = f.Bool("firstStep");
  return o;
}

// The fused loop covers the paper's form and PyTorch's form with momentum and without Nesterov.
static bool SgdFusable(const SgdOptions& o, const at::Tensor& w, const at::Tensor& g, const at::Tensor& v) {
  return Fusable({&w, &g, &v}) && (o.paper || (!o.nesterov && o.momentum != 0));
}

ALEXNET_CLONES static void Bf16Chunk(const float* pw, uint16_t* pc, int64_t b, int64_t e) {
  for (int64_t k = b; k < e; k++) pc[k] = ToBf16(pw[k]);
}

ALEXNET_CLONES static void SgdPaperChunk(float* pw, const float* pg, float* pv, float fm, float fwdlr, float flr,
                                         int64_t b, int64_t e) {
  for (int64_t k = b; k < e; k++) {
    const float vk = fm * pv[k] - fwdlr * pw[k] - flr * pg[k];
    pv[k] = vk;
    pw[k] += vk;
  }
}

ALEXNET_CLONES static void SgdTorchChunk(float* pw, const float* pg, float* pv, float keep, float take, float fwd,
                                         float flr, int64_t b, int64_t e) {
  for (int64_t k = b; k < e; k++) {
    const float vk = keep * pv[k] + take * (pg[k] + fwd * pw[k]);
    pv[k] = vk;
    pw[k] -= flr * vk;
  }
}

static void SgdFused(const SgdOptions& o, const at::Tensor& w, const at::Tensor& g, const at::Tensor& v) {
  float* pw = w.data_ptr<float>();
  const float* pg = g.data_ptr<float>();
  float* pv = v.data_ptr<float>();
  const float fm = static_cast<float>(o.momentum), fwd = static_cast<float>(o.weightDecay),
              flr = static_cast<float>(o.lr), fd = static_cast<float>(1 - o.dampening);
  uint16_t* pc = KeptFor(w);
  const float keep = o.firstStep ? 0.f : fm, take = o.firstStep ? 1.f : fd;
  // In blocks that stay in the cache between the update and the bfloat16 copy.
  ParallelBlocks(w, [&](int64_t b, int64_t e) {
    if (o.paper) SgdPaperChunk(pw, pg, pv, fm, fwd * flr, flr, b, e);
    else SgdTorchChunk(pw, pg, pv, keep, take, fwd, flr, b, e);
    if (pc) Bf16Chunk(pw, pc, b, e);
  });
  BumpKept(w, pc != nullptr);
}

static void SgdForeach(const SgdOptions& o, std::vector<at::Tensor>& W, const std::vector<at::Tensor>& G,
                       std::vector<at::Tensor>& V) {
  const double lr = o.lr, mom = o.momentum, wd = o.weightDecay;
  if (o.paper) {
    at::_foreach_mul_(V, mom);
    at::_foreach_add_(V, W, -wd * lr);
    at::_foreach_add_(V, G, -lr);
    at::_foreach_add_(W, V);
    return;
  }
  std::vector<at::Tensor> D = wd != 0 ? at::_foreach_add(G, W, wd) : G;
  if (mom != 0) {
    if (o.firstStep) {
      for (size_t i = 0; i < V.size(); i++) V[i].copy_(D[i]);
    } else {
      at::_foreach_mul_(V, mom);
      at::_foreach_add_(V, D, 1 - o.dampening);
    }
    if (o.nesterov) D = at::_foreach_add(D, V, mom);
    else D = V;
  }
  at::_foreach_add_(W, D, -lr);
}

// sgdStep(params, momentumBuffers, { lr, momentum, weightDecay, dampening, nesterov, form, firstStep })
static Napi::Value SgdStep(const Napi::CallbackInfo& info) {
  at::NoGradGuard ng;
  std::vector<at::Tensor> ps = TList(info, 0);
  std::vector<at::Tensor> bufs = TList(info, 1);
  CheckSameLength(ps.size(), bufs.size());
  const SgdOptions o = ReadSgdOptions(info, 2);
  std::vector<at::Tensor> W, G, V;
  for (size_t i = 0; i < ps.size(); i++) {
    const at::Tensor& w = ps[i];
    if (!HasGrad(w)) continue;
    at::Tensor g = w.grad();
    if (SgdFusable(o, w, g, bufs[i])) {
      SgdFused(o, w, g, bufs[i]);
    } else {
      W.push_back(w);
      G.push_back(g);
      V.push_back(bufs[i]);
    }
  }
  if (!W.empty()) SgdForeach(o, W, G, V);
  return info.Env().Undefined();
}

// ---- Adam --------------------------------------------------------------------------------------------------
// step counts from 1; decoupled = AdamW (w <- w*(1 - lr*wd)), else L2 added to the gradient (Adam).
struct AdamOptions {
  double step, lr, beta1, beta2, eps, weightDecay;
  bool decoupled;
  double BiasCorrection1() const { return 1 - std::pow(beta1, step); }
  double BiasCorrection2() const { return 1 - std::pow(beta2, step); }
};

static AdamOptions ReadAdamOptions(const Napi::CallbackInfo& info, size_t i) {
  Fields f(info, i);
  AdamOptions o;
  o.step = f.Num("step");
  o.lr = f.Num("lr");
  o.beta1 = f.Num("beta1");
  o.beta2 = f.Num("beta2");
  o.eps = f.Num("eps");
  o.weightDecay = f.Num("weightDecay");
  o.decoupled = f.Bool("decoupled");
  return o;
}

ALEXNET_CLONES static void AdamChunk(float* pw, const float* pg, float* pm, float* pv, int mode, float decay, float fwd,
                                     float fb1, float fb2, float step_size, float inv_sqrt_bc2, float feps, int64_t b,
                                     int64_t e) {
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
}

static void AdamFused(const AdamOptions& o, const at::Tensor& w, const at::Tensor& g, const at::Tensor& m,
                      const at::Tensor& v) {
  float* pw = w.data_ptr<float>();
  const float* pg = g.data_ptr<float>();
  float* pm = m.data_ptr<float>();
  float* pv = v.data_ptr<float>();
  const double lr = o.lr, wd = o.weightDecay;
  const float fb1 = static_cast<float>(o.beta1), fb2 = static_cast<float>(o.beta2), feps = static_cast<float>(o.eps),
              fwd = static_cast<float>(wd), step_size = static_cast<float>(lr / o.BiasCorrection1()),
              inv_sqrt_bc2 = static_cast<float>(1 / std::sqrt(o.BiasCorrection2())),
              decay = static_cast<float>(1 - lr * wd);
  // Branch-free inner loops (one per weight-decay mode) so that the compiler vectorises them.
  const int mode = fwd == 0 ? 0 : (o.decoupled ? 1 : 2);
  uint16_t* pc = KeptFor(w);
  ParallelBlocks(w, [&](int64_t b, int64_t e) {
    AdamChunk(pw, pg, pm, pv, mode, decay, fwd, fb1, fb2, step_size, inv_sqrt_bc2, feps, b, e);
    if (pc) Bf16Chunk(pw, pc, b, e);
  });
  BumpKept(w, pc != nullptr);
}

static void AdamForeach(const AdamOptions& o, std::vector<at::Tensor>& W, std::vector<at::Tensor> G,
                        std::vector<at::Tensor>& M, std::vector<at::Tensor>& V) {
  const double lr = o.lr, wd = o.weightDecay, b1 = o.beta1, b2 = o.beta2;
  if (wd != 0) {
    if (o.decoupled) at::_foreach_mul_(W, 1 - lr * wd);
    else G = at::_foreach_add(G, W, wd);
  }
  at::_foreach_mul_(M, b1);
  at::_foreach_add_(M, G, 1 - b1);
  at::_foreach_mul_(V, b2);
  at::_foreach_addcmul_(V, G, G, 1 - b2);
  std::vector<at::Tensor> denom = at::_foreach_sqrt(V);
  at::_foreach_div_(denom, std::sqrt(o.BiasCorrection2()));
  at::_foreach_add_(denom, o.eps);
  at::_foreach_addcdiv_(W, M, denom, -lr / o.BiasCorrection1());
}

// adamStep(params, expAvg, expAvgSq, { step, lr, beta1, beta2, eps, weightDecay, decoupled })
static Napi::Value AdamStep(const Napi::CallbackInfo& info) {
  at::NoGradGuard ng;
  std::vector<at::Tensor> ps = TList(info, 0);
  std::vector<at::Tensor> m = TList(info, 1);
  std::vector<at::Tensor> v = TList(info, 2);
  CheckSameLength(ps.size(), m.size());
  CheckSameLength(ps.size(), v.size());
  const AdamOptions o = ReadAdamOptions(info, 3);
  std::vector<at::Tensor> W, G, M, V;
  for (size_t i = 0; i < ps.size(); i++) {
    const at::Tensor& w = ps[i];
    if (!HasGrad(w)) continue;
    at::Tensor g = w.grad();
    if (Fusable({&w, &g, &m[i], &v[i]})) {
      AdamFused(o, w, g, m[i], v[i]);
    } else {
      W.push_back(w);
      G.push_back(g);
      M.push_back(m[i]);
      V.push_back(v[i]);
    }
  }
  if (!W.empty()) AdamForeach(o, W, std::move(G), M, V);
  return info.Env().Undefined();
}

void RegisterOptim(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "sgdStep", SgdStep);
  Export(env, exports, "adamStep", AdamStep);
}

}  // namespace alexnet
