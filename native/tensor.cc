// Tensors in and out: creation, reading data back, metadata, handles, conversions and in-place initialisers.
#include "common.h"

#include <cstring>

namespace alexnet {

static at::TensorOptions Options(const Napi::CallbackInfo& info, size_t dtypeArg, size_t deviceArg) {
  at::TensorOptions o = at::TensorOptions().dtype(at::kFloat);
  if (Present(info, dtypeArg)) o = o.dtype(ParseDtype(Str(info, dtypeArg)));
  if (Present(info, deviceArg)) o = o.device(ParseDevice(Str(info, deviceArg)));
  return o;
}

// ---- data in and out ---------------------------------------------------------------------------------------
// The shape (argument 1) and dtype (argument 2) of a tensor made from JS bytes, and how many bytes it needs.
struct Layout {
  std::vector<int64_t> shape;
  at::ScalarType dtype;
  size_t bytes;
};

static Layout ReadLayout(const Napi::CallbackInfo& info) {
  Layout l{Ints(info, 1), ParseDtype(Str(info, 2)), 0};
  int64_t numel = 1;
  for (int64_t s : l.shape) {
    if (s < 0) throw ArgError("shape entries must be >= 0");
    numel *= s;
  }
  l.bytes = static_cast<size_t>(numel) * c10::elementSize(l.dtype);
  return l;
}

// fromBuffer(typedArray, shape, dtype): copies the bytes; the tensor never aliases JS memory.
static Napi::Value FromBuffer(const Napi::CallbackInfo& info) {
  if (!info[0].IsTypedArray()) throw ArgError("argument 1 must be a TypedArray");
  Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
  auto [shape, dt, bytes] = ReadLayout(info);
  if (ta.ByteLength() != bytes) {
    throw ArgError("data has " + std::to_string(ta.ByteLength()) + " bytes but shape and dtype need " +
                   std::to_string(bytes));
  }
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dt));
  if (bytes) {
    const uint8_t* src = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    std::memcpy(t.data_ptr(), src, bytes);
  }
  return Wrap(info.Env(), t);
}

// fromBuffers(arrayBuffers, shape, dtype): one tensor from buffers laid end to end (a batch from its images, each
// from a decode worker), with one copy and no joined buffer in JS between.
static Napi::Value FromBuffers(const Napi::CallbackInfo& info) {
  if (!info[0].IsArray()) throw ArgError("argument 1 must be an array of ArrayBuffers");
  Napi::Array parts = info[0].As<Napi::Array>();
  auto [shape, dt, bytes] = ReadLayout(info);
  std::vector<std::pair<const uint8_t*, size_t>> spans;
  size_t total = 0;
  for (uint32_t i = 0; i < parts.Length(); i++) {
    Napi::Value v = parts.Get(i);
    if (!v.IsArrayBuffer()) throw ArgError("argument 1: entry " + std::to_string(i) + " must be an ArrayBuffer");
    Napi::ArrayBuffer ab = v.As<Napi::ArrayBuffer>();
    spans.push_back({static_cast<const uint8_t*>(ab.Data()), ab.ByteLength()});
    total += ab.ByteLength();
  }
  if (total != bytes)
    throw ArgError("the buffers hold " + std::to_string(total) + " bytes but shape and dtype need " +
                   std::to_string(bytes));
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dt));
  uint8_t* dst = static_cast<uint8_t*>(t.data_ptr());
  for (auto [p, n] : spans) {
    if (n) std::memcpy(dst, p, n);
    dst += n;
  }
  return Wrap(info.Env(), t);
}

// toBuffer(t): a fresh ArrayBuffer holding the tensor's elements in row-major order (copied to the CPU).
static Napi::Value ToBuffer(const Napi::CallbackInfo& info) {
  at::Tensor t = T(info, 0).detach().to(at::kCPU).contiguous();
  size_t bytes = t.nbytes();
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(info.Env(), bytes);
  if (bytes) std::memcpy(ab.Data(), t.data_ptr(), bytes);
  return ab;
}

static Napi::Value Item(const Napi::CallbackInfo& info) {
  const at::Tensor& t = T(info, 0);
  if (t.numel() != 1) throw ArgError("item() needs a tensor with one element, got " + ShapeString(t));
  return Napi::Number::New(info.Env(), t.item<double>());
}

// meta(t) -> { shape, dtype, device }
static Napi::Value Meta(const Napi::CallbackInfo& info) {
  const at::Tensor& t = T(info, 0);
  Napi::Env e = info.Env();
  Napi::Array shape = Napi::Array::New(e, t.dim());
  for (int64_t i = 0; i < t.dim(); i++) shape.Set(static_cast<uint32_t>(i), Napi::Number::New(e, t.size(i)));
  Napi::Object o = Napi::Object::New(e);
  o.Set("shape", shape);
  o.Set("dtype", DtypeName(t.scalar_type()));
  o.Set("device", DeviceName(t.device()));
  return o;
}

// isContiguous(t, channelsLast?)
static Napi::Value IsContiguous(const Napi::CallbackInfo& info) {
  const at::Tensor& t = T(info, 0);
  bool cl = Present(info, 1) && Bool(info, 1);
  return Napi::Boolean::New(info.Env(),
                            t.is_contiguous(cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous));
}

static Napi::Value Dispose(const Napi::CallbackInfo& info) {
  if (!IsTensor(info.Env(), info[0])) throw ArgError("argument 1 must be a tensor");
  TensorWrap::Unwrap(info[0].As<Napi::Object>())->Release(info.Env());
  return info.Env().Undefined();
}

// ---- factories: (shape, dtype?, device?) -------------------------------------------------------------------
static Napi::Value Zeros(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::zeros(Ints(info, 0), Options(info, 1, 2)));
}

static Napi::Value Ones(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::ones(Ints(info, 0), Options(info, 1, 2)));
}

// full(shape, value, dtype?, device?)
static Napi::Value Full(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::full(Ints(info, 0), Num(info, 1), Options(info, 2, 3)));
}

static Napi::Value Randn(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::randn(Ints(info, 0), Options(info, 1, 2)));
}

static Napi::Value Rand(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::rand(Ints(info, 0), Options(info, 1, 2)));
}

// randint(low, high, shape, device?) -> int64
static Napi::Value Randint(const Napi::CallbackInfo& info) {
  at::TensorOptions o = at::TensorOptions().dtype(at::kLong);
  if (Present(info, 3)) o = o.device(ParseDevice(Str(info, 3)));
  return Wrap(info.Env(), at::randint(Int(info, 0), Int(info, 1), Ints(info, 2), o));
}

// randperm(n, device?) -> int64
static Napi::Value Randperm(const Napi::CallbackInfo& info) {
  at::TensorOptions o = at::TensorOptions().dtype(at::kLong);
  if (Present(info, 1)) o = o.device(ParseDevice(Str(info, 1)));
  return Wrap(info.Env(), at::randperm(Int(info, 0), o));
}

// arange(start, end, step, dtype?, device?)
static Napi::Value Arange(const Napi::CallbackInfo& info) {
  at::TensorOptions o = at::TensorOptions().dtype(at::kLong);
  if (Present(info, 3)) o = o.dtype(ParseDtype(Str(info, 3)));
  if (Present(info, 4)) o = o.device(ParseDevice(Str(info, 4)));
  return Wrap(info.Env(), at::arange(Num(info, 0), Num(info, 1), Num(info, 2), o));
}

// ---- conversions -------------------------------------------------------------------------------------------
// to(t, device|null, dtype|null, memoryFormat|null): memoryFormat is "contiguous" or "channelsLast"
static Napi::Value To(const Napi::CallbackInfo& info) {
  at::Tensor t = T(info, 0);
  at::TensorOptions o = t.options();
  if (Present(info, 1)) o = o.device(ParseDevice(Str(info, 1)));
  if (Present(info, 2)) o = o.dtype(ParseDtype(Str(info, 2)));
  c10::optional<at::MemoryFormat> mf;
  if (Present(info, 3)) {
    std::string f = Str(info, 3);
    if (f == "channelsLast") mf = at::MemoryFormat::ChannelsLast;
    else if (f == "contiguous") mf = at::MemoryFormat::Contiguous;
    else throw ArgError("unknown memory format '" + f + "' (expected contiguous or channelsLast)");
  }
  return Wrap(info.Env(), t.to(o, /*non_blocking=*/false, /*copy=*/false, mf));
}

static Napi::Value Contiguous(const Napi::CallbackInfo& info) { return Wrap(info.Env(), T(info, 0).contiguous()); }

static Napi::Value Clone(const Napi::CallbackInfo& info) { return Wrap(info.Env(), T(info, 0).clone()); }

static Napi::Value Detach(const Napi::CallbackInfo& info) { return Wrap(info.Env(), T(info, 0).detach()); }

// ---- in-place initialisers used by nn/init: they never record autograd history -----------------------------
// normal_(t, mean, std)
static Napi::Value NormalInPlace(const Napi::CallbackInfo& info) {
  at::NoGradGuard g;
  T(info, 0).normal_(Num(info, 1), Num(info, 2));
  return info.Env().Undefined();
}

// uniform_(t, low, high)
static Napi::Value UniformInPlace(const Napi::CallbackInfo& info) {
  at::NoGradGuard g;
  T(info, 0).uniform_(Num(info, 1), Num(info, 2));
  return info.Env().Undefined();
}

// fill_(t, value)
static Napi::Value FillInPlace(const Napi::CallbackInfo& info) {
  at::NoGradGuard g;
  T(info, 0).fill_(Num(info, 1));
  return info.Env().Undefined();
}

// copy_(dst, src): equal shapes only
static Napi::Value CopyInPlace(const Napi::CallbackInfo& info) {
  at::NoGradGuard g;
  const at::Tensor& dst = T(info, 0);
  const at::Tensor& src = T(info, 1);
  if (dst.sizes() != src.sizes()) {
    throw ArgError("copy_ needs equal shapes, got " + ShapeString(dst) + " and " + ShapeString(src));
  }
  const_cast<at::Tensor&>(dst).copy_(src);
  return info.Env().Undefined();
}

void RegisterTensor(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "fromBuffer", FromBuffer);
  Export(env, exports, "fromBuffers", FromBuffers);
  Export(env, exports, "toBuffer", ToBuffer);
  Export(env, exports, "item", Item);
  Export(env, exports, "meta", Meta);
  Export(env, exports, "isContiguous", IsContiguous);
  Export(env, exports, "dispose", Dispose);
  Export(env, exports, "zeros", Zeros);
  Export(env, exports, "ones", Ones);
  Export(env, exports, "full", Full);
  Export(env, exports, "randn", Randn);
  Export(env, exports, "rand", Rand);
  Export(env, exports, "randint", Randint);
  Export(env, exports, "randperm", Randperm);
  Export(env, exports, "arange", Arange);
  Export(env, exports, "to", To);
  Export(env, exports, "contiguous", Contiguous);
  Export(env, exports, "clone", Clone);
  Export(env, exports, "detach", Detach);
  Export(env, exports, "normal_", NormalInPlace);
  Export(env, exports, "uniform_", UniformInPlace);
  Export(env, exports, "fill_", FillInPlace);
  Export(env, exports, "copy_", CopyInPlace);
}

}  // namespace alexnet
