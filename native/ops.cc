// Shape operations, elementwise math, reductions and matrix products: thin calls into ATen.
#include "common.h"

#include <unordered_map>

namespace alexnet {

static const std::unordered_map<std::string, std::function<at::Tensor(const at::Tensor&)>>& UnaryOps() {
  static const std::unordered_map<std::string, std::function<at::Tensor(const at::Tensor&)>> ops = {
      {"neg", [](const at::Tensor& a) { return at::neg(a); }},
      {"exp", [](const at::Tensor& a) { return at::exp(a); }},
      {"log", [](const at::Tensor& a) { return at::log(a); }},
      {"sqrt", [](const at::Tensor& a) { return at::sqrt(a); }},
      {"rsqrt", [](const at::Tensor& a) { return at::rsqrt(a); }},
      {"abs", [](const at::Tensor& a) { return at::abs(a); }},
      {"relu", [](const at::Tensor& a) { return at::relu(a); }},
      {"sigmoid", [](const at::Tensor& a) { return at::sigmoid(a); }},
      {"tanh", [](const at::Tensor& a) { return at::tanh(a); }},
      {"sign", [](const at::Tensor& a) { return at::sign(a); }},
      {"floor", [](const at::Tensor& a) { return at::floor(a); }},
      {"ceil", [](const at::Tensor& a) { return at::ceil(a); }},
      {"round", [](const at::Tensor& a) { return at::round(a); }},
      {"square", [](const at::Tensor& a) { return at::square(a); }},
      {"reciprocal", [](const at::Tensor& a) { return at::reciprocal(a); }},
      {"isfinite", [](const at::Tensor& a) { return at::isfinite(a); }},
      {"logicalNot", [](const at::Tensor& a) { return at::logical_not(a); }},
      // In place: the result shares the input's storage (autograd checks that this is safe).
      {"relu_",
       [](const at::Tensor& a) {
         at::Tensor t = a;
         return at::relu_(t);
       }},
  };
  return ops;
}

using BinT = std::function<at::Tensor(const at::Tensor&, const at::Tensor&)>;
using BinS = std::function<at::Tensor(const at::Tensor&, const at::Scalar&)>;

static const std::unordered_map<std::string, std::pair<BinT, BinS>>& BinaryOps() {
  static const std::unordered_map<std::string, std::pair<BinT, BinS>> ops = {
      {"add",
       {[](const at::Tensor& a, const at::Tensor& b) { return at::add(a, b); },
        [](const at::Tensor& a, const at::Scalar& b) { return at::add(a, b); }}},
      {"sub",
       {[](const at::Tensor& a, const at::Tensor& b) { return at::sub(a, b); },
        [](const at::Tensor& a, const at::Scalar& b) { return at::sub(a, b); }}},
      {"mul",
       {[](const at::Tensor& a, const at::Tensor& b) { return at::mul(a, b); },
        [](const at::Tensor& a, const at::Scalar& b) { return at::mul(a, b); }}},
      {"div",
       {[](const at::Tensor& a, const at::Tensor& b) { return at::div(a, b); },
        [](const at::Tensor& a, const at::Scalar& b) { return at::div(a, b); }}},
      {"pow",
       {[](const at::Tensor& a, const at::Tensor& b) { return at::pow(a, b); },
        [](const at::Tensor& a, const at::Scalar& b) { return at::pow(a, b); }}},
      {"maximum",
       {[](const at::Tensor& a, const at::Tensor& b) { return at::maximum(a, b); },
        [](const at::Tensor& a, const at::Scalar& b) { return at::clamp_min(a, b); }}},
      {"minimum",
       {[](const at::Tensor& a, const at::Tensor& b) { return at::minimum(a, b); },
        [](const at::Tensor& a, const at::Scalar& b) { return at::clamp_max(a, b); }}},
      {"eq",
       {[](const at::Tensor& a, const at::Tensor& b) { return at::eq(a, b); },
        [](const at::Tensor& a, const at::Scalar& b) { return at::eq(a, b); }}},
      {"ne",
       {[](const at::Tensor& a, const at::Tensor& b) { return at::ne(a, b); },
        [](const at::Tensor& a, const at::Scalar& b) { return at::ne(a, b); }}},
      {"lt",
       {[](const at::Tensor& a, const at::Tensor& b) { return at::lt(a, b); },
        [](const at::Tensor& a, const at::Scalar& b) { return at::lt(a, b); }}},
      {"le",
       {[](const at::Tensor& a, const at::Tensor& b) { return at::le(a, b); },
        [](const at::Tensor& a, const at::Scalar& b) { return at::le(a, b); }}},
      {"gt",
       {[](const at::Tensor& a, const at::Tensor& b) { return at::gt(a, b); },
        [](const at::Tensor& a, const at::Scalar& b) { return at::gt(a, b); }}},
      {"ge",
       {[](const at::Tensor& a, const at::Tensor& b) { return at::ge(a, b); },
        [](const at::Tensor& a, const at::Scalar& b) { return at::ge(a, b); }}},
  };
  return ops;
}

static c10::optional<int64_t> OptInt(const Napi::CallbackInfo& info, size_t i) {
  if (!Present(info, i)) return c10::nullopt;
  return Int(info, i);
}

// ---- shape -------------------------------------------------------------------------------------------------
static Napi::Value Reshape(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), T(info, 0).reshape(Ints(info, 1)));
}

static Napi::Value Permute(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), T(info, 0).permute(Ints(info, 1)));
}

// transpose(t, dim0, dim1)
static Napi::Value Transpose(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), T(info, 0).transpose(Int(info, 1), Int(info, 2)));
}

// flatten(t, startDim, endDim)
static Napi::Value Flatten(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), T(info, 0).flatten(Int(info, 1), Int(info, 2)));
}

static Napi::Value Squeeze(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), T(info, 0).squeeze(Int(info, 1)));
}

static Napi::Value Unsqueeze(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), T(info, 0).unsqueeze(Int(info, 1)));
}

static Napi::Value Expand(const Napi::CallbackInfo& info) { return Wrap(info.Env(), T(info, 0).expand(Ints(info, 1))); }

// narrow(t, dim, start, length)
static Napi::Value Narrow(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), T(info, 0).narrow(Int(info, 1), Int(info, 2), Int(info, 3)));
}

// asStrided(t, size, stride, offset): a view of t's storage (used to rebuild tensors saved with strides).
static Napi::Value AsStrided(const Napi::CallbackInfo& info) {
  const at::Tensor& t = T(info, 0);
  std::vector<int64_t> size = Ints(info, 1), stride = Ints(info, 2);
  int64_t offset = Int(info, 3);
  if (size.size() != stride.size()) throw ArgError("size and stride must have the same length");
  int64_t last = offset;  // the largest element index the view touches must lie inside t
  for (size_t i = 0; i < size.size(); i++) {
    if (size[i] < 0 || stride[i] < 0) throw ArgError("size and stride must be >= 0");
    if (size[i] == 0) {
      last = -1;
      break;
    }
    last += (size[i] - 1) * stride[i];
  }
  if (offset < 0 || last >= t.numel()) throw ArgError("the strided view reaches past the end of its storage");
  return Wrap(info.Env(), t.as_strided(size, stride, offset));
}

// indexSelect(t, dim, index)
static Napi::Value IndexSelect(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::index_select(T(info, 0), Int(info, 1), T(info, 2)));
}

// gather(t, dim, index)
static Napi::Value Gather(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::gather(T(info, 0), Int(info, 1), T(info, 2)));
}

// cat(tensors, dim)
static Napi::Value Cat(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::cat(TList(info, 0), Int(info, 1)));
}

// stack(tensors, dim)
static Napi::Value Stack(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::stack(TList(info, 0), Int(info, 1)));
}

// flip(t, dims)
static Napi::Value Flip(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::flip(T(info, 0), Ints(info, 1)));
}

// pad(t, [left, right, top, bottom, ...], value): constant padding, last dimension first (as F.pad)
static Napi::Value Pad(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::constant_pad_nd(T(info, 0), Ints(info, 1), Num(info, 2)));
}

// ---- elementwise -------------------------------------------------------------------------------------------
// unary(op, t): op is a key of UnaryOps()
static Napi::Value Unary(const Napi::CallbackInfo& info) {
  std::string op = Str(info, 0);
  auto it = UnaryOps().find(op);
  if (it == UnaryOps().end()) throw ArgError("unknown unary op '" + op + "'");
  return Wrap(info.Env(), it->second(T(info, 1)));
}

// binary(op, a, b): op is a key of BinaryOps(); b is a tensor or a number
static Napi::Value Binary(const Napi::CallbackInfo& info) {
  std::string op = Str(info, 0);
  auto it = BinaryOps().find(op);
  if (it == BinaryOps().end()) throw ArgError("unknown binary op '" + op + "'");
  const at::Tensor& a = T(info, 1);
  if (info[2].IsNumber()) {
    // An integral number keeps an integer tensor integral (as Python ints do in PyTorch).
    double d = Num(info, 2);
    bool integral = !at::isFloatingType(a.scalar_type()) && d == static_cast<double>(static_cast<int64_t>(d));
    at::Scalar sc = integral ? at::Scalar(static_cast<int64_t>(d)) : at::Scalar(d);
    return Wrap(info.Env(), it->second.second(a, sc));
  }
  return Wrap(info.Env(), it->second.first(a, T(info, 2)));
}

// clamp(t, min|null, max|null)
static Napi::Value Clamp(const Napi::CallbackInfo& info) {
  c10::optional<at::Scalar> lo, hi;
  if (Present(info, 1)) lo = at::Scalar(Num(info, 1));
  if (Present(info, 2)) hi = at::Scalar(Num(info, 2));
  return Wrap(info.Env(), at::clamp(T(info, 0), lo, hi));
}

// where(cond, a, b)
static Napi::Value Where(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::where(T(info, 0), T(info, 1), T(info, 2)));
}

static Napi::Value Matmul(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::matmul(T(info, 0), T(info, 1)));
}

// ---- reductions --------------------------------------------------------------------------------------------
// reduce(op, t, dims|null, keepdim): op in sum, mean, amax, amin, var, std (unbiased=false)
static Napi::Value Reduce(const Napi::CallbackInfo& info) {
  std::string op = Str(info, 0);
  const at::Tensor& t = T(info, 1);
  bool all = !Present(info, 2);
  std::vector<int64_t> dims = all ? std::vector<int64_t>{} : Ints(info, 2);
  bool keep = Present(info, 3) && Bool(info, 3);
  if (all) {
    dims.resize(t.dim());
    for (int64_t i = 0; i < t.dim(); i++) dims[i] = i;
  }
  at::Tensor r;
  if (op == "sum") r = dims.empty() ? t.sum() : at::sum(t, dims, keep);
  else if (op == "mean") r = dims.empty() ? t.mean() : at::mean(t, dims, keep);
  else if (op == "amax") r = dims.empty() ? t.clone() : at::amax(t, dims, keep);
  else if (op == "amin") r = dims.empty() ? t.clone() : at::amin(t, dims, keep);
  else if (op == "var") r = at::var(t, at::OptionalIntArrayRef(dims), /*unbiased=*/false, keep);
  else if (op == "std") r = at::std(t, at::OptionalIntArrayRef(dims), /*unbiased=*/false, keep);
  else throw ArgError("unknown reduction '" + op + "'");
  return Wrap(info.Env(), r);
}

// argmax(t, dim|null, keepdim)
static Napi::Value Argmax(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::argmax(T(info, 0), OptInt(info, 1), Present(info, 2) && Bool(info, 2)));
}

// topk(t, k, dim, largest, sorted) -> [values, indices]
static Napi::Value Topk(const Napi::CallbackInfo& info) {
  auto r = at::topk(T(info, 0), Int(info, 1), Int(info, 2), Bool(info, 3), Bool(info, 4));
  return WrapList(info.Env(), {std::get<0>(r), std::get<1>(r)});
}

// softmax(t, dim)
static Napi::Value Softmax(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::softmax(T(info, 0), Int(info, 1)));
}

// logSoftmax(t, dim)
static Napi::Value LogSoftmax(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::log_softmax(T(info, 0), Int(info, 1)));
}

// bincount(t, minlength): histogram of int64 values in [0, minlength), e.g. confusion counts
static Napi::Value Bincount(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::bincount(T(info, 0), {}, Int(info, 1)));
}

void RegisterOps(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "reshape", Reshape);
  Export(env, exports, "permute", Permute);
  Export(env, exports, "transpose", Transpose);
  Export(env, exports, "flatten", Flatten);
  Export(env, exports, "squeeze", Squeeze);
  Export(env, exports, "unsqueeze", Unsqueeze);
  Export(env, exports, "expand", Expand);
  Export(env, exports, "narrow", Narrow);
  Export(env, exports, "asStrided", AsStrided);
  Export(env, exports, "indexSelect", IndexSelect);
  Export(env, exports, "gather", Gather);
  Export(env, exports, "cat", Cat);
  Export(env, exports, "stack", Stack);
  Export(env, exports, "flip", Flip);
  Export(env, exports, "pad", Pad);
  Export(env, exports, "unary", Unary);
  Export(env, exports, "binary", Binary);
  Export(env, exports, "clamp", Clamp);
  Export(env, exports, "where", Where);
  Export(env, exports, "matmul", Matmul);
  Export(env, exports, "reduce", Reduce);
  Export(env, exports, "argmax", Argmax);
  Export(env, exports, "topk", Topk);
  Export(env, exports, "softmax", Softmax);
  Export(env, exports, "logSoftmax", LogSoftmax);
  Export(env, exports, "bincount", Bincount);
}

}  // namespace alexnet
