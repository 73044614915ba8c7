// Neural-network functions: convolution, linear, pooling, dropout, batch norm, local response normalisation,
// losses and resizing. Each is an ATen call (or a composition of them), so autograd gives exact gradients, except
// where an autograd Function of our own is faster: dropout on the CPU (FastDropout, below) and float32 3×3
// convolutions in training (Winograd, native/onednn.cc).
#include "common.h"
#include "kernels.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/custom_function.h>

namespace alexnet {

static std::vector<int64_t> Pair(const Napi::CallbackInfo& info, size_t i) {
  std::vector<int64_t> v = Ints(info, i);
  if (v.size() != 2) throw ArgError("expected a pair of integers");
  return v;
}

// Local response normalisation across channels of an (N, C, H, W) tensor.
//   b = a / (k + scale * sum_{window} a^2)^beta
// The window holds `size` channels: size/2 before and (size-1)/2 after, clipped at the first and last channel.
// alphaPerSize = true:  scale = alpha / size  (PyTorch's LocalResponseNorm and Caffe)
// alphaPerSize = false: scale = alpha         (the paper, TensorFlow's tf.nn.lrn with size = 2r + 1)
static at::Tensor ComputeLocalResponseNorm(const at::Tensor& x, int64_t size, double alpha, double beta, double k,
                                           bool alphaPerSize) {
  if (x.dim() != 4) throw ArgError("localResponseNorm expects an (N, C, H, W) tensor, got " + ShapeString(x));
  if (size < 1) throw ArgError("localResponseNorm size must be >= 1");
  at::Tensor sq = x.mul(x).unsqueeze(1);  // (N, 1, C, H, W)
  sq = at::constant_pad_nd(sq, {0, 0, 0, 0, size / 2, (size - 1) / 2}, 0.0);
  // Average over the window with the zero padding counted, then rescale: sum = mean * size.
  at::Tensor mean = at::avg_pool3d(sq, {size, 1, 1}, {1, 1, 1}).squeeze(1);
  const double scale = alphaPerSize ? alpha : alpha * static_cast<double>(size);
  at::Tensor denom = mean.mul(scale).add(k).pow(beta);
  return x.div(denom);
}

static int64_t Reduction(const std::string& r) {
  if (r == "mean") return at::Reduction::Mean;
  if (r == "sum") return at::Reduction::Sum;
  if (r == "none") return at::Reduction::None;
  throw ArgError("unknown reduction '" + r + "' (expected mean, sum or none)");
}

// conv2d(x, w, b|null, stride[2], padding[2], dilation[2], groups)
static Napi::Value Conv2d(const Napi::CallbackInfo& info) {
  at::Tensor x = T(info, 0);
  const std::vector<int64_t> stride = Pair(info, 3);
#if TORCH_VERSION_MAJOR >= 2
  // libtorch 2.6 as Debian builds it (oneDNN on AVX-512) computes wrong input gradients for some float32 NCHW
  // convolutions, in PyTorch 2.6 itself too: measured against float64, AlexNet's conv1 (3→96-like, 11×11, stride 4)
  // off by 1.2 on values of 1.8, a 3×3 6→4 convolution by 1.1 on 1.6; larger channel counts, channels-last, AVX2
  // and libtorch 1.13 are exact. So an NCHW input that needs its gradient runs in channels-last there (the result
  // handed back in NCHW). A network's first layer never needs it, and our models run in channels-last anyway.
  if (x.device().is_cpu() && x.requires_grad() && x.dim() == 4 && x.is_contiguous()) {
    return Wrap(info.Env(),
                at::conv2d(x.contiguous(at::MemoryFormat::ChannelsLast), AutocastWeight(T(info, 1)),
                           AutocastWeight(OptT(info, 2)), stride, Pair(info, 4), Pair(info, 5), Int(info, 6))
                    .contiguous());
  }
#endif
  const std::vector<int64_t> padding = Pair(info, 4), dilation = Pair(info, 5);
  at::Tensor y;
  if (TryWinogradConv(x, T(info, 1), OptT(info, 2), stride, padding, dilation, Int(info, 6), &y))
    return Wrap(info.Env(), y);
  return Wrap(info.Env(), at::conv2d(x, AutocastWeight(T(info, 1)), AutocastWeight(OptT(info, 2)), stride, padding,
                                     dilation, Int(info, 6)));
}

// linear(x, w, b|null)
static Napi::Value Linear(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::linear(T(info, 0), AutocastWeight(T(info, 1)), AutocastWeight(OptT(info, 2))));
}

// maxPool2d(x, kernel[2], stride[2], padding[2], ceilMode)
static Napi::Value MaxPool2d(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(),
              at::max_pool2d(T(info, 0), Pair(info, 1), Pair(info, 2), Pair(info, 3), {1, 1}, Bool(info, 4)));
}

// avgPool2d(x, kernel[2], stride[2], padding[2], ceilMode, countIncludePad)
static Napi::Value AvgPool2d(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(),
              at::avg_pool2d(T(info, 0), Pair(info, 1), Pair(info, 2), Pair(info, 3), Bool(info, 4), Bool(info, 5)));
}

// adaptiveAvgPool2d(x, size[2])
static Napi::Value AdaptiveAvgPool2d(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::adaptive_avg_pool2d(T(info, 0), Pair(info, 1)));
}

// ---- dropout on the CPU ----------------------------------------------------------------------------------------
// libtorch 1.13 as Debian builds it (no MKL) draws dropout's Bernoulli mask one element at a time from the
// Mersenne twister, ~10 ns an element (measured: 3.1 ms for FC6's 32 × 9216 inputs, as long as FC7's forward), then
// scales and multiplies in two more passes. Here one pass: a 64-bit seed drawn from the default CPU generator (so
// manual seeds, checkpoints' generator state and resumes behave as before), and each element's keep/drop from a
// counter-based hash of (seed, offset), in parallel. Same arithmetic as at::dropout: y = x · noise with noise 0 or
// 1/(1 − p) rounded to the tensor's type (so a dropped infinity gives NaN, as there); backward gy · noise.
// The masks are not the ones at::dropout would draw for the same seed (nothing can be: its stream is sequential).

// A 32-bit integer hash with low bias (Wellons' lowbias32): two rounds of it over (offset ^ seed) decide an element.
static inline uint32_t Mix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x7feb352dU;
  h ^= h >> 15;
  h *= 0x846ca68bU;
  h ^= h >> 16;
  return h;
}

// Keep element k when the top 24 bits of its hash are below `keep` (= round((1 − p) · 2^24)).
static inline bool Keep(int64_t k, uint32_t s0, uint32_t s1, uint32_t keep) {
  return (Mix32(Mix32(static_cast<uint32_t>(k) ^ s0) + s1) >> 8) < keep;
}

ALEXNET_CLONES static void DropoutF32(const float* x, float* y, uint8_t* m, int64_t b, int64_t e, uint32_t s0,
                                      uint32_t s1, uint32_t keep, float noise) {
  for (int64_t k = b; k < e; k++) {
    const bool kept = Keep(k, s0, s1, keep);
    m[k] = kept;
    y[k] = x[k] * (kept ? noise : 0.0f);
  }
}

ALEXNET_CLONES static void DropoutBf16(const uint16_t* x, uint16_t* y, uint8_t* m, int64_t b, int64_t e, uint32_t s0,
                                       uint32_t s1, uint32_t keep, float noise) {
  for (int64_t k = b; k < e; k++) {
    const bool kept = Keep(k, s0, s1, keep);
    m[k] = kept;
    y[k] = ToBf16(FromBf16(x[k]) * (kept ? noise : 0.0f));
  }
}

ALEXNET_CLONES static void MaskF32(const float* g, float* out, const uint8_t* m, int64_t b, int64_t e, float noise) {
  for (int64_t k = b; k < e; k++) out[k] = g[k] * (m[k] ? noise : 0.0f);
}

ALEXNET_CLONES static void MaskBf16(const uint16_t* g, uint16_t* out, const uint8_t* m, int64_t b, int64_t e,
                                    float noise) {
  for (int64_t k = b; k < e; k++) out[k] = ToBf16(FromBf16(g[k]) * (m[k] ? noise : 0.0f));
}

// noise = 1/(1 − p) as at::dropout makes it: divided in float32 (the op math of both types), then rounded to the
// tensor's type.
static float DropoutNoise(double p, at::ScalarType t) {
  const float f = 1.0f / static_cast<float>(1.0 - p);
  return t == at::kBFloat16 ? FromBf16(ToBf16(f)) : f;
}

// out = g · noise where the mask kept the element (out, g and the mask laid out alike).
static void ApplyMask(const at::Tensor& g, const at::Tensor& m, const at::Tensor& out, float noise) {
  const uint8_t* pm = m.data_ptr<uint8_t>();
  if (g.scalar_type() == at::kFloat) {
    const float* pg = g.data_ptr<float>();
    float* po = out.data_ptr<float>();
    ParallelBlocks(g, [&](int64_t b, int64_t e) { MaskF32(pg, po, pm, b, e, noise); });
  } else {
    const auto* pg = reinterpret_cast<const uint16_t*>(g.data_ptr());
    auto* po = reinterpret_cast<uint16_t*>(out.data_ptr());
    ParallelBlocks(g, [&](int64_t b, int64_t e) { MaskBf16(pg, po, pm, b, e, noise); });
  }
}

struct FastDropout : public torch::autograd::Function<FastDropout> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, double p) {
    uint64_t seed;
    {
      at::Generator gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      seed = gen.get<at::CPUGeneratorImpl>()->random64();
    }
    const auto s0 = static_cast<uint32_t>(seed), s1 = static_cast<uint32_t>(seed >> 32);
    const auto keep = static_cast<uint32_t>(std::lround((1.0 - p) * 16777216.0));
    const float noise = DropoutNoise(p, x.scalar_type());
    at::Tensor y = at::empty_like(x);
    at::Tensor m = at::empty_like(x, at::TensorOptions().dtype(at::kByte));
    uint8_t* pm = m.data_ptr<uint8_t>();
    if (x.scalar_type() == at::kFloat) {
      const float* px = x.data_ptr<float>();
      float* py = y.data_ptr<float>();
      ParallelBlocks(x, [&](int64_t b, int64_t e) { DropoutF32(px, py, pm, b, e, s0, s1, keep, noise); });
    } else {
      const auto* px = reinterpret_cast<const uint16_t*>(x.data_ptr());
      auto* py = reinterpret_cast<uint16_t*>(y.data_ptr());
      ParallelBlocks(x, [&](int64_t b, int64_t e) { DropoutBf16(px, py, pm, b, e, s0, s1, keep, noise); });
    }
    ctx->save_for_backward({m});
    ctx->saved_data["noise"] = static_cast<double>(noise);
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const at::Tensor m = ctx->get_saved_variables()[0];
    const auto noise = static_cast<float>(ctx->saved_data["noise"].toDouble());
    at::Tensor g = grads[0];
    if (g.sizes() != m.sizes() || g.strides() != m.strides()) g = g.contiguous(m.suggest_memory_format());
    if (g.strides() != m.strides()) {
      // Layouts that still differ (rare): the same product through ATen.
      return {g * m.to(g.scalar_type()) * noise, at::Tensor()};
    }
    at::Tensor gx = at::empty_like(g);
    ApplyMask(g, m, gx, noise);
    return {gx, at::Tensor()};
  }
};

// dropout(x, p, training)
static Napi::Value Dropout(const Napi::CallbackInfo& info) {
  const at::Tensor& x = T(info, 0);
  const double p = Num(info, 1);
  const bool training = Bool(info, 2);
  if (training && p > 0 && p < 1 && x.device().is_cpu() &&
      (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16) && x.is_non_overlapping_and_dense() &&
      x.numel() > 0 && x.numel() < (int64_t{1} << 32))
    return Wrap(info.Env(), FastDropout::apply(x, p));
  return Wrap(info.Env(), at::dropout(x, p, training));
}

// batchNorm(x, weight|null, bias|null, runningMean|null, runningVar|null, training, momentum, eps)
static Napi::Value BatchNorm(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(),
              at::batch_norm(T(info, 0), OptT(info, 1), OptT(info, 2), OptT(info, 3), OptT(info, 4), Bool(info, 5),
                             Num(info, 6), Num(info, 7), at::globalContext().userEnabledCuDNN()));
}

// localResponseNorm(x, size, alpha, beta, k, alphaPerSize)
static Napi::Value LocalResponseNorm(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), ComputeLocalResponseNorm(T(info, 0), Int(info, 1), Num(info, 2), Num(info, 3), Num(info, 4),
                                                   Bool(info, 5)));
}

// crossEntropy(logits, target, reduction, labelSmoothing)
static Napi::Value CrossEntropy(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(),
              at::cross_entropy_loss(T(info, 0), T(info, 1), {}, Reduction(Str(info, 2)), -100, Num(info, 3)));
}

// mseLoss(a, b, reduction)
static Napi::Value MseLoss(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::mse_loss(T(info, 0), T(info, 1), Reduction(Str(info, 2))));
}

// resize(x, [h, w], mode, antialias): mode "bilinear" (align_corners = false) or "nearest"
static Napi::Value Resize(const Napi::CallbackInfo& info) {
  const at::Tensor& x = T(info, 0);
  std::vector<int64_t> size = Pair(info, 1);
  std::string mode = Str(info, 2);
  bool antialias = Present(info, 3) && Bool(info, 3);
  if (mode == "bilinear") {
    if (antialias) return Wrap(info.Env(), at::_upsample_bilinear2d_aa(x, at::IntArrayRef(size), false));
    return Wrap(info.Env(), at::upsample_bilinear2d(x, at::IntArrayRef(size), false));
  }
  if (mode == "nearest") return Wrap(info.Env(), at::upsample_nearest2d(x, at::IntArrayRef(size)));
  throw ArgError("unknown resize mode '" + mode + "' (expected bilinear or nearest)");
}

void RegisterNN(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "conv2d", Conv2d);
  Export(env, exports, "linear", Linear);
  Export(env, exports, "maxPool2d", MaxPool2d);
  Export(env, exports, "avgPool2d", AvgPool2d);
  Export(env, exports, "adaptiveAvgPool2d", AdaptiveAvgPool2d);
  Export(env, exports, "dropout", Dropout);
  Export(env, exports, "batchNorm", BatchNorm);
  Export(env, exports, "localResponseNorm", LocalResponseNorm);
  Export(env, exports, "crossEntropy", CrossEntropy);
  Export(env, exports, "mseLoss", MseLoss);
  Export(env, exports, "resize", Resize);
}

}  // namespace alexnet
