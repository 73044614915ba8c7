// Neural-network functions: convolution, linear, pooling, dropout, batch norm, local response normalisation,
// losses and resizing. Every one is an ATen call (or a composition of them), so autograd gives exact gradients.
#include "common.h"

namespace alexnet {

// The weight as a layer uses it: under CPU bf16 autocast its kept bfloat16 copy (native/optim.cc), else itself.
at::Tensor AutocastWeight(const at::Tensor& w);
c10::optional<at::Tensor> AutocastWeight(const c10::optional<at::Tensor>& w);

// native/onednn.cc: a float32 3×3 convolution needing gradients through oneDNN's Winograd kernels where it has them;
// false (nothing done) otherwise.
bool TryWinogradConv(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& b,
                     const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
                     const std::vector<int64_t>& dilation, int64_t groups, at::Tensor* out);

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

// dropout(x, p, training)
static Napi::Value Dropout(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::dropout(T(info, 0), Num(info, 1), Bool(info, 2)));
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
