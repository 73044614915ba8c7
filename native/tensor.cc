// The tensor wrapper, argument conversion, the error guard, tensor creation, reading data back and conversions.
#include "common.h"

#include <malloc.h>

#include <atomic>
#include <cstring>
#include <sstream>

namespace alexnet {

// ---- TensorWrap --------------------------------------------------------------------------------------------
Napi::Function TensorWrap::Init(Napi::Env env) {
  return DefineClass(env, "NativeTensor", {});
}

// Handles that exist (JS objects not yet collected) and handles that still hold a tensor: for leak diagnosis.
static std::atomic<int64_t> g_wraps{0};
static std::atomic<int64_t> g_live{0};

TensorWrap::TensorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorWrap>(info) { g_wraps++; }

TensorWrap::~TensorWrap() {
  g_wraps--;
  if (tensor_.defined()) g_live--;
  // Finalizer path: V8 is collecting the object. The at::Tensor destructor drops our reference.
  if (accounted_ != 0) {
    Napi::MemoryManagement::AdjustExternalMemory(Env(), -accounted_);
    accounted_ = 0;
  }
}

void TensorWrap::Set(Napi::Env env, at::Tensor t) {
  Release(env);
  tensor_ = std::move(t);
  if (tensor_.defined()) g_live++;
  // Views share their base's storage: only owners are reported, so V8 sees roughly the real native memory.
  if (tensor_.defined() && !tensor_.is_view() && tensor_.device().is_cpu()) {
    accounted_ = static_cast<int64_t>(tensor_.nbytes());
    if (accounted_ > 0) Napi::MemoryManagement::AdjustExternalMemory(env, accounted_);
  }
}

void TensorWrap::Release(Napi::Env env) {
  if (accounted_ != 0) {
    Napi::MemoryManagement::AdjustExternalMemory(env, -accounted_);
    accounted_ = 0;
  }
  if (tensor_.defined()) g_live--;
  tensor_ = at::Tensor();
}

AddonData& Data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

// ---- conversions -------------------------------------------------------------------------------------------
Napi::Value Wrap(Napi::Env env, at::Tensor t) {
  Napi::Object obj = Data(env).tensorCtor.New({});
  TensorWrap::Unwrap(obj)->Set(env, std::move(t));
  return obj;
}

Napi::Value WrapMaybe(Napi::Env env, const at::Tensor& t) {
  return t.defined() ? Wrap(env, t) : env.Undefined();
}

Napi::Array WrapList(Napi::Env env, const std::vector<at::Tensor>& ts) {
  Napi::Array out = Napi::Array::New(env, ts.size());
  for (size_t i = 0; i < ts.size(); i++) out.Set(static_cast<uint32_t>(i), Wrap(env, ts[i]));
  return out;
}

bool IsTensor(Napi::Env env, const Napi::Value& v) {
  return v.IsObject() && v.As<Napi::Object>().InstanceOf(Data(env).tensorCtor.Value());
}

static std::string Ordinal(size_t i) { return "argument " + std::to_string(i + 1); }

static const at::Tensor& FromValue(Napi::Env env, const Napi::Value& v, const std::string& what) {
  if (!IsTensor(env, v)) throw ArgError(what + " must be a tensor");
  TensorWrap* w = TensorWrap::Unwrap(v.As<Napi::Object>());
  if (w->disposed()) throw ArgError(what + " is a tensor that was already disposed");
  return w->tensor();
}

const at::Tensor& T(const Napi::CallbackInfo& info, size_t i) { return FromValue(info.Env(), info[i], Ordinal(i)); }

c10::optional<at::Tensor> OptT(const Napi::CallbackInfo& info, size_t i) {
  if (!Present(info, i)) return c10::nullopt;
  return FromValue(info.Env(), info[i], Ordinal(i));
}

std::vector<at::Tensor> TList(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsArray()) throw ArgError(Ordinal(i) + " must be an array of tensors");
  Napi::Array arr = info[i].As<Napi::Array>();
  std::vector<at::Tensor> out;
  out.reserve(arr.Length());
  for (uint32_t k = 0; k < arr.Length(); k++) {
    out.push_back(FromValue(info.Env(), arr.Get(k), Ordinal(i) + "[" + std::to_string(k) + "]"));
  }
  return out;
}

std::vector<int64_t> Ints(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsArray()) throw ArgError(Ordinal(i) + " must be an array of integers");
  Napi::Array arr = info[i].As<Napi::Array>();
  std::vector<int64_t> out(arr.Length());
  for (uint32_t k = 0; k < arr.Length(); k++) {
    Napi::Value v = arr.Get(k);
    if (!v.IsNumber()) throw ArgError(Ordinal(i) + "[" + std::to_string(k) + "] must be an integer");
    double d = v.As<Napi::Number>().DoubleValue();
    if (d != static_cast<double>(static_cast<int64_t>(d))) {
      throw ArgError(Ordinal(i) + "[" + std::to_string(k) + "] must be an integer");
    }
    out[k] = static_cast<int64_t>(d);
  }
  return out;
}

int64_t Int(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsNumber()) throw ArgError(Ordinal(i) + " must be an integer");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d))) throw ArgError(Ordinal(i) + " must be an integer");
  return static_cast<int64_t>(d);
}

double Num(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsNumber()) throw ArgError(Ordinal(i) + " must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

bool Bool(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsBoolean()) throw ArgError(Ordinal(i) + " must be a boolean");
  return info[i].As<Napi::Boolean>().Value();
}

std::string Str(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsString()) throw ArgError(Ordinal(i) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

bool Present(const Napi::CallbackInfo& info, size_t i) {
  return i < info.Length() && !info[i].IsUndefined() && !info[i].IsNull();
}

at::ScalarType ParseDtype(const std::string& name) {
  if (name == "float32") return at::kFloat;
  if (name == "float16") return at::kHalf;
  if (name == "bfloat16") return at::kBFloat16;
  if (name == "float64") return at::kDouble;
  if (name == "uint8") return at::kByte;
  if (name == "int32") return at::kInt;
  if (name == "int64") return at::kLong;
  if (name == "bool") return at::kBool;
  throw ArgError("unknown dtype '" + name + "' (expected float32, float16, bfloat16, float64, uint8, int32, int64 or bool)");
}

std::string DtypeName(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kDouble: return "float64";
    case at::kByte: return "uint8";
    case at::kInt: return "int32";
    case at::kLong: return "int64";
    case at::kBool: return "bool";
    default: return std::string(c10::toString(t));
  }
}

at::Device ParseDevice(const std::string& name) {
  if (name == "cpu") return at::Device(at::kCPU);
  if (name == "cuda") return at::Device(at::kCUDA, 0);
  if (name.rfind("cuda:", 0) == 0) {
    const std::string idx = name.substr(5);
    if (!idx.empty() && idx.find_first_not_of("0123456789") == std::string::npos) {
      return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(std::stoi(idx)));
    }
  }
  throw ArgError("unknown device '" + name + "' (expected cpu, cuda or cuda:N)");
}

std::string DeviceName(const at::Device& d) {
  if (d.is_cpu()) return "cpu";
  return d.str();
}

std::string ShapeString(const at::Tensor& t) {
  std::ostringstream s;
  s << "[";
  for (int64_t i = 0; i < t.dim(); i++) s << (i ? "," : "") << t.size(i);
  s << "] " << DtypeName(t.scalar_type());
  if (!t.device().is_cpu()) s << " " << DeviceName(t.device());
  return s.str();
}

// ---- the guard ---------------------------------------------------------------------------------------------
static std::string FirstLines(const std::string& msg) {
  // libtorch messages may carry a C++ stack trace after the first lines; keep the human part.
  std::string out;
  std::istringstream in(msg);
  std::string line;
  int kept = 0;
  while (std::getline(in, line) && kept < 3) {
    if (line.rfind("Exception raised from", 0) == 0 || line.rfind("frame #", 0) == 0) break;
    if (line.empty()) continue;
    out += (kept ? " " : "") + line;
    kept++;
  }
  return out.empty() ? msg : out;
}

static std::string ArgShapes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string out;
  for (size_t i = 0; i < info.Length(); i++) {
    Napi::Value v = info[i];
    std::string one;
    if (IsTensor(env, v)) {
      TensorWrap* w = TensorWrap::Unwrap(v.As<Napi::Object>());
      one = w->disposed() ? "<disposed>" : ShapeString(w->tensor());
    } else if (v.IsArray()) {
      Napi::Array arr = v.As<Napi::Array>();
      bool any = false;
      for (uint32_t k = 0; k < arr.Length(); k++) {
        Napi::Value e = arr.Get(k);
        if (!IsTensor(env, e)) continue;
        TensorWrap* w = TensorWrap::Unwrap(e.As<Napi::Object>());
        one += std::string(any ? ", " : "") + (w->disposed() ? "<disposed>" : ShapeString(w->tensor()));
        any = true;
      }
      if (any) one = "(" + one + ")";
    }
    if (!one.empty()) out += (out.empty() ? "" : ", ") + one;
  }
  return out;
}

static void ThrowEngineError(const Napi::CallbackInfo& info, const char* op, const std::string& msg) {
  Napi::Env env = info.Env();
  std::string shapes = ArgShapes(info);
  std::string full = std::string(op) + ": " + msg + (shapes.empty() ? "" : " (inputs: " + shapes + ")");
  AddonData& d = Data(env);
  Napi::Object err;
  if (!d.errorCtor.IsEmpty()) {
    err = d.errorCtor.New({Napi::String::New(env, full)});
  } else {
    err = Napi::Error::New(env, full).Value();
  }
  err.Set("op", Napi::String::New(env, op));
  err.Set("shapes", Napi::String::New(env, shapes));
  err.Set("detail", Napi::String::New(env, msg));
  throw Napi::Error(env, err);
}

Napi::Value Guard(const Napi::CallbackInfo& info, const char* op, const std::function<Napi::Value()>& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const c10::Error& e) {
    ThrowEngineError(info, op, FirstLines(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    ThrowEngineError(info, op, FirstLines(e.what()));
  }
  return info.Env().Undefined();
}

void Export(Napi::Env env, Napi::Object exports, const char* name, Body body) {
  exports.Set(name, Napi::Function::New(
                        env,
                        [name, body](const Napi::CallbackInfo& info) -> Napi::Value {
                          return Guard(info, name, [&]() { return body(info); });
                        },
                        name));
}

// ---- creation, data, conversion ----------------------------------------------------------------------------
static at::TensorOptions Options(const Napi::CallbackInfo& info, size_t dtypeArg, size_t deviceArg) {
  at::TensorOptions o = at::TensorOptions().dtype(at::kFloat);
  if (Present(info, dtypeArg)) o = o.dtype(ParseDtype(Str(info, dtypeArg)));
  if (Present(info, deviceArg)) o = o.device(ParseDevice(Str(info, deviceArg)));
  return o;
}

static size_t ElementSize(at::ScalarType t) { return c10::elementSize(t); }

void InitTensor(Napi::Env env, Napi::Object exports) {
  // fromBuffer(typedArray, shape, dtype): copies the bytes; the tensor never aliases JS memory.
  Export(env, exports, "fromBuffer", [](const Napi::CallbackInfo& info) -> Napi::Value {
    if (!info[0].IsTypedArray()) throw ArgError("argument 1 must be a TypedArray");
    Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
    std::vector<int64_t> shape = Ints(info, 1);
    at::ScalarType dt = ParseDtype(Str(info, 2));
    int64_t numel = 1;
    for (int64_t s : shape) {
      if (s < 0) throw ArgError("shape entries must be >= 0");
      numel *= s;
    }
    size_t bytes = static_cast<size_t>(numel) * ElementSize(dt);
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
  });

  // toBuffer(t): a fresh ArrayBuffer holding the tensor's elements in row-major order (copied to the CPU).
  Export(env, exports, "toBuffer", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::Tensor t = T(info, 0).detach().to(at::kCPU).contiguous();
    size_t bytes = t.nbytes();
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(info.Env(), bytes);
    if (bytes) std::memcpy(ab.Data(), t.data_ptr(), bytes);
    return ab;
  });

  Export(env, exports, "item", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const at::Tensor& t = T(info, 0);
    if (t.numel() != 1) throw ArgError("item() needs a tensor with one element, got " + ShapeString(t));
    return Napi::Number::New(info.Env(), t.item<double>());
  });

  Export(env, exports, "meta", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const at::Tensor& t = T(info, 0);
    Napi::Env e = info.Env();
    Napi::Array shape = Napi::Array::New(e, t.dim());
    for (int64_t i = 0; i < t.dim(); i++) shape.Set(static_cast<uint32_t>(i), Napi::Number::New(e, t.size(i)));
    Napi::Object o = Napi::Object::New(e);
    o.Set("shape", shape);
    o.Set("dtype", DtypeName(t.scalar_type()));
    o.Set("device", DeviceName(t.device()));
    return o;
  });

  // memoryStats(): tensor handles and the C allocator's view (bytes), for diagnosing memory growth.
  Export(env, exports, "memoryStats", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Napi::Env e = info.Env();
    Napi::Object o = Napi::Object::New(e);
    o.Set("handles", static_cast<double>(g_wraps.load()));
    o.Set("liveTensors", static_cast<double>(g_live.load()));
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 mi = mallinfo2();
    o.Set("heapBytes", static_cast<double>(mi.arena));
    o.Set("heapInUse", static_cast<double>(mi.uordblks));
    o.Set("heapFree", static_cast<double>(mi.fordblks));
    o.Set("mmapBytes", static_cast<double>(mi.hblkhd));
#endif
    return o;
  });

  Export(env, exports, "requiresGrad", [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Napi::Boolean::New(info.Env(), T(info, 0).requires_grad());
  });

  Export(env, exports, "isContiguous", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const at::Tensor& t = T(info, 0);
    bool cl = Present(info, 1) && Bool(info, 1);
    return Napi::Boolean::New(info.Env(), t.is_contiguous(cl ? at::MemoryFormat::ChannelsLast
                                                             : at::MemoryFormat::Contiguous));
  });

  Export(env, exports, "dispose", [](const Napi::CallbackInfo& info) -> Napi::Value {
    if (!IsTensor(info.Env(), info[0])) throw ArgError("argument 1 must be a tensor");
    TensorWrap::Unwrap(info[0].As<Napi::Object>())->Release(info.Env());
    return info.Env().Undefined();
  });

  // Factories: (shape, dtype?, device?)
  Export(env, exports, "zeros", [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Wrap(info.Env(), at::zeros(Ints(info, 0), Options(info, 1, 2)));
  });
  Export(env, exports, "ones", [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Wrap(info.Env(), at::ones(Ints(info, 0), Options(info, 1, 2)));
  });
  Export(env, exports, "full", [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Wrap(info.Env(), at::full(Ints(info, 0), Num(info, 1), Options(info, 2, 3)));
  });
  Export(env, exports, "randn", [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Wrap(info.Env(), at::randn(Ints(info, 0), Options(info, 1, 2)));
  });
  Export(env, exports, "rand", [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Wrap(info.Env(), at::rand(Ints(info, 0), Options(info, 1, 2)));
  });
  // randint(low, high, shape, device?) -> int64
  Export(env, exports, "randint", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::TensorOptions o = at::TensorOptions().dtype(at::kLong);
    if (Present(info, 3)) o = o.device(ParseDevice(Str(info, 3)));
    return Wrap(info.Env(), at::randint(Int(info, 0), Int(info, 1), Ints(info, 2), o));
  });
  Export(env, exports, "randperm", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::TensorOptions o = at::TensorOptions().dtype(at::kLong);
    if (Present(info, 1)) o = o.device(ParseDevice(Str(info, 1)));
    return Wrap(info.Env(), at::randperm(Int(info, 0), o));
  });
  // arange(start, end, step, dtype?, device?)
  Export(env, exports, "arange", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::TensorOptions o = at::TensorOptions().dtype(at::kLong);
    if (Present(info, 3)) o = o.dtype(ParseDtype(Str(info, 3)));
    if (Present(info, 4)) o = o.device(ParseDevice(Str(info, 4)));
    return Wrap(info.Env(), at::arange(Num(info, 0), Num(info, 1), Num(info, 2), o));
  });

  // to(t, device|null, dtype|null, memoryFormat|null): memoryFormat is "contiguous" or "channelsLast"
  Export(env, exports, "to", [](const Napi::CallbackInfo& info) -> Napi::Value {
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
  });
  Export(env, exports, "contiguous", [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Wrap(info.Env(), T(info, 0).contiguous());
  });
  Export(env, exports, "clone", [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Wrap(info.Env(), T(info, 0).clone());
  });
  Export(env, exports, "detach", [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Wrap(info.Env(), T(info, 0).detach());
  });
  // In-place initialisers used by nn/init: they never record autograd history.
  Export(env, exports, "normal_", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::NoGradGuard g;
    T(info, 0).normal_(Num(info, 1), Num(info, 2));
    return info.Env().Undefined();
  });
  Export(env, exports, "uniform_", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::NoGradGuard g;
    T(info, 0).uniform_(Num(info, 1), Num(info, 2));
    return info.Env().Undefined();
  });
  Export(env, exports, "fill_", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::NoGradGuard g;
    T(info, 0).fill_(Num(info, 1));
    return info.Env().Undefined();
  });
  Export(env, exports, "copy_", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::NoGradGuard g;
    const at::Tensor& dst = T(info, 0);
    const at::Tensor& src = T(info, 1);
    if (dst.sizes() != src.sizes()) {
      throw ArgError("copy_ needs equal shapes, got " + ShapeString(dst) + " and " + ShapeString(src));
    }
    const_cast<at::Tensor&>(dst).copy_(src);
    return info.Env().Undefined();
  });
}

}  // namespace alexnet
