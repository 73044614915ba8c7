// Shared declarations of the alexnet-ts native addon: the tensor wrapper, argument conversion and the guard
// that turns every C++ exception into a JavaScript EngineError naming the op and the shapes involved.
#pragma once

#include <napi.h>
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

namespace alexnet {

// One JS object per tensor handle. The at::Tensor is a reference-counted handle itself: dispose() drops this
// object's reference at once; the finalizer (on garbage collection) is the backstop.
class TensorWrap : public Napi::ObjectWrap<TensorWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit TensorWrap(const Napi::CallbackInfo& info);
  ~TensorWrap() override;

  void Set(Napi::Env env, at::Tensor t);
  void Release(Napi::Env env);
  bool disposed() const { return !tensor_.defined(); }
  const at::Tensor& tensor() const { return tensor_; }

 private:
  at::Tensor tensor_;
  int64_t accounted_ = 0;  // bytes reported to V8 as external memory
};

struct AddonData {
  Napi::FunctionReference tensorCtor;
  Napi::FunctionReference errorCtor;  // EngineError, supplied by the TypeScript side
};

AddonData& Data(Napi::Env env);

// Thrown by argument checks; the guard reports it with the op's name.
struct ArgError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Runs `body`, converting exceptions into EngineError(op, message, shapes of tensor arguments).
Napi::Value Guard(const Napi::CallbackInfo& info, const char* op, const std::function<Napi::Value()>& body);

// ---- conversions -------------------------------------------------------------------------------------------
Napi::Value Wrap(Napi::Env env, at::Tensor t);
Napi::Value WrapMaybe(Napi::Env env, const at::Tensor& t);  // undefined when t is undefined
Napi::Array WrapList(Napi::Env env, const std::vector<at::Tensor>& ts);
bool IsTensor(Napi::Env env, const Napi::Value& v);
const at::Tensor& T(const Napi::CallbackInfo& info, size_t i);       // required tensor argument
c10::optional<at::Tensor> OptT(const Napi::CallbackInfo& info, size_t i);  // tensor, null or undefined
std::vector<at::Tensor> TList(const Napi::CallbackInfo& info, size_t i);
std::vector<int64_t> Ints(const Napi::CallbackInfo& info, size_t i);
int64_t Int(const Napi::CallbackInfo& info, size_t i);
double Num(const Napi::CallbackInfo& info, size_t i);
bool Bool(const Napi::CallbackInfo& info, size_t i);
std::string Str(const Napi::CallbackInfo& info, size_t i);
bool Present(const Napi::CallbackInfo& info, size_t i);  // neither undefined nor null

at::ScalarType ParseDtype(const std::string& name);
std::string DtypeName(at::ScalarType t);
at::Device ParseDevice(const std::string& name);
std::string DeviceName(const at::Device& d);
std::string ShapeString(const at::Tensor& t);

// Registration helper: exports[name] = fn wrapped in Guard(op = name).
using Body = std::function<Napi::Value(const Napi::CallbackInfo&)>;
void Export(Napi::Env env, Napi::Object exports, const char* name, Body body);

void InitTensor(Napi::Env env, Napi::Object exports);
void InitOps(Napi::Env env, Napi::Object exports);
void InitNN(Napi::Env env, Napi::Object exports);
void InitAutograd(Napi::Env env, Napi::Object exports);
void InstallAllocator(Napi::Env env, Napi::Object exports);

}  // namespace alexnet
