// Whole optimiser steps: one native call updates every parameter (not one call per parameter and op).
//
// Two paths. The common case (float32, contiguous, CPU) runs a fused loop, one pass over memory per parameter:
// libtorch 1.13 has no fused CPU optimiser, and the op-by-op form reads and writes every parameter-sized buffer
// several times (measured: the fused loop is 3x faster). Everything else (GPU tensors, other dtypes) goes through
// multi-tensor ops, a few kernels for all parameters together (torch.optim's foreach form).
#include "common.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <initializer_list>

namespace alexnet {

static constexpr int64_t kGrain = 1 << 15;

static bool Fusable(std::initializer_list<const at::Tensor*> ts) {
  for (const at::Tensor* t : ts) {
    if (!t->device().is_cpu() || t->scalar_type() != at::kFloat || !t->is_contiguous()) return false;
  }
  return true;
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

static void SgdFused(const SgdOptions& o, const at::Tensor& w, const at::Tensor& g, const at::Tensor& v) {
  float* pw = w.data_ptr<float>();
  const float* pg = g.data_ptr<float>();
  float* pv = v.data_ptr<float>();
  const float fm = static_cast<float>(o.momentum), fwd = static_cast<float>(o.weightDecay),
              flr = static_cast<float>(o.lr), fd = static_cast<float>(1 - o.dampening);
  if (o.paper) {
    at::parallel_for(0, w.numel(), kGrain, [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; k++) {
        const float vk = fm * pv[k] - fwd * flr * pw[k] - flr * pg[k];
        pv[k] = vk;
        pw[k] += vk;
      }
    });
  } else {
    const float keep = o.firstStep ? 0.f : fm, take = o.firstStep ? 1.f : fd;
    at::parallel_for(0, w.numel(), kGrain, [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; k++) {
        const float vk = keep * pv[k] + take * (pg[k] + fwd * pw[k]);
        pv[k] = vk;
        pw[k] -= flr * vk;
      }
    });
  }
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
