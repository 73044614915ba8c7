// Infrastructure of the native addon: the tensor wrapper, argument conversion, options objects, dtype and
// device names, the error guard and the Export helper.
#include "common.h"

#include <atomic>
#include <sstream>

namespace alexnet {

// ---- TensorWrap --------------------------------------------------------------------------------------------
Napi::Function TensorWrap::Init(Napi::Env env) { return DefineClass(env, "NativeTensor", {}); }

static std::atomic<int64_t> g_wraps{0};
static std::atomic<int64_t> g_live{0};

HandleCounts CountHandles() { return {g_wraps.load(), g_live.load()}; }

TensorWrap::TensorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorWrap>(info) { g_wraps++; }

// Tells V8 about native memory without throwing: napi_adjust_external_memory's status is ignored, since a failure
// here (an environment being torn down) must not become an exception in a finalizer.
static void AdjustQuietly(napi_env env, int64_t change) {
  int64_t total = 0;
  if (env != nullptr && change != 0) napi_adjust_external_memory(env, change, &total);
}

TensorWrap::~TensorWrap() {
  // Finalizer path: V8 is collecting the object, possibly while a worker thread's environment is torn down.
  // The at::Tensor destructor drops our reference. Nothing here may throw.
  try {
    g_wraps--;
    if (tensor_.defined()) g_live--;
    AdjustQuietly(Env(), -accounted_);
    accounted_ = 0;
    tensor_ = at::Tensor();
  } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor has nowhere to report to
  }
}

void TensorWrap::Set(Napi::Env env, at::Tensor t) {
  Release(env);
  tensor_ = std::move(t);
  if (tensor_.defined()) g_live++;
  // Views share their base's storage: only owners are reported, so V8 sees roughly the real native memory.
  if (tensor_.defined() && !tensor_.is_view() && tensor_.device().is_cpu()) {
    accounted_ = static_cast<int64_t>(tensor_.nbytes());
    if (accounted_ > 0) AdjustQuietly(env, accounted_);
  }
}

void TensorWrap::Release(Napi::Env env) {
  AdjustQuietly(env, -accounted_);
  accounted_ = 0;
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

Napi::Value WrapMaybe(Napi::Env env, const at::Tensor& t) { return t.defined() ? Wrap(env, t) : env.Undefined(); }

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

// ---- options objects ---------------------------------------------------------------------------------------
static std::string TypeOf(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsBoolean()) return "a boolean";
  if (v.IsNumber()) return "a number";
  if (v.IsString()) return "a string";
  if (v.IsArray()) return "an array";
  if (v.IsFunction()) return "a function";
  return "an object";
}

Fields::Fields(const Napi::CallbackInfo& info, size_t i) : what_(Ordinal(i)) {
  if (!info[i].IsObject() || info[i].IsArray() || info[i].IsFunction()) {
    throw ArgError(what_ + " must be an options object, got " + TypeOf(info[i]));
  }
  obj_ = info[i].As<Napi::Object>();
}

Napi::Value Fields::Get(const char* key, bool ok(const Napi::Value&), const char* expected) const {
  Napi::Value v = obj_.Get(key);
  if (!ok(v)) throw ArgError(what_ + ": field '" + key + "' must be " + expected + ", got " + TypeOf(v));
  return v;
}

static bool IsNumber(const Napi::Value& v) { return v.IsNumber(); }
static bool IsBoolean(const Napi::Value& v) { return v.IsBoolean(); }
static bool IsString(const Napi::Value& v) { return v.IsString(); }

double Fields::Num(const char* key) const { return Get(key, IsNumber, "a number").As<Napi::Number>().DoubleValue(); }

bool Fields::Bool(const char* key) const { return Get(key, IsBoolean, "a boolean").As<Napi::Boolean>().Value(); }

std::string Fields::Str(const char* key) const { return Get(key, IsString, "a string").As<Napi::String>().Utf8Value(); }

at::ScalarType ParseDtype(const std::string& name) {
  if (name == "float32") return at::kFloat;
  if (name == "float16") return at::kHalf;
  if (name == "bfloat16") return at::kBFloat16;
  if (name == "float64") return at::kDouble;
  if (name == "uint8") return at::kByte;
  if (name == "int32") return at::kInt;
  if (name == "int64") return at::kLong;
  if (name == "bool") return at::kBool;
  throw ArgError("unknown dtype '" + name +
                 "' (expected float32, float16, bfloat16, float64, uint8, int32, int64 or bool)");
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
  } catch (...) {
    ThrowEngineError(info, op, "a native exception of unknown type");
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

// ---- exports -----------------------------------------------------------------------------------------------
// setErrorClass(cls): the TypeScript side passes its EngineError class so that libtorch failures arrive as it.
static Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction()) throw ArgError("argument 1 must be a class");
  Data(info.Env()).errorCtor = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

void RegisterCommon(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData<AddonData>(data);
  data->tensorCtor = Napi::Persistent(TensorWrap::Init(env));
  exports.Set("NativeTensor", data->tensorCtor.Value());
  Export(env, exports, "setErrorClass", SetErrorClass);
}

}  // namespace alexnet
