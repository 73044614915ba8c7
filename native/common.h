// Shared declarations of the alexnet-ts native addon: the tensor wrapper, argument conversion, the guard that
// turns every C++ exception into a JavaScript EngineError naming the op and the shapes involved, and each
// part's registration function. Definitions are in common.cc.
#pragma once

// A JavaScript exception that cannot be thrown because the environment is going away (a worker thread being
// terminated mid-call) is dropped instead of becoming a C++ exception that escapes the callback and aborts the
// whole process ("terminate called after throwing an instance of 'Napi::Error'").
#ifndef NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS
#define NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS
#endif

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

// Handles that exist (JS objects not yet collected) and handles that still hold a tensor: for leak diagnosis.
struct HandleCounts {
  int64_t handles;
  int64_t liveTensors;
};
HandleCounts CountHandles();

struct AddonData {
  Napi::FunctionReference tensorCtor;
  Napi::FunctionReference errorCtor;  // EngineError, supplied by the TypeScript side
};

AddonData& Data(Napi::Env env);

// Thrown by argument checks; the guard reports it with the op's name.
struct ArgError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Runs `body`, converting exceptions into EngineError(op, message, shapes of tensor arguments); an exception of no
// known type becomes one too. Finalizers and destructors never throw (they run during worker teardown, where a
// throw would terminate the process): they report memory with the C API and catch everything.
Napi::Value Guard(const Napi::CallbackInfo& info, const char* op, const std::function<Napi::Value()>& body);

// ---- conversions -------------------------------------------------------------------------------------------
Napi::Value Wrap(Napi::Env env, at::Tensor t);
Napi::Value WrapMaybe(Napi::Env env, const at::Tensor& t);  // undefined when t is undefined
Napi::Array WrapList(Napi::Env env, const std::vector<at::Tensor>& ts);
bool IsTensor(Napi::Env env, const Napi::Value& v);
const at::Tensor& T(const Napi::CallbackInfo& info, size_t i);             // required tensor argument
c10::optional<at::Tensor> OptT(const Napi::CallbackInfo& info, size_t i);  // tensor, null or undefined
std::vector<at::Tensor> TList(const Napi::CallbackInfo& info, size_t i);
std::vector<int64_t> Ints(const Napi::CallbackInfo& info, size_t i);
int64_t Int(const Napi::CallbackInfo& info, size_t i);
double Num(const Napi::CallbackInfo& info, size_t i);
bool Bool(const Napi::CallbackInfo& info, size_t i);
std::string Str(const Napi::CallbackInfo& info, size_t i);
bool Present(const Napi::CallbackInfo& info, size_t i);  // neither undefined nor null

// A plain options object passed as argument i, read field by field. Every read checks that the field is there
// and has the right type, and a failure names both: "argument 3: field 'lr' must be a number, got undefined".
class Fields {
 public:
  Fields(const Napi::CallbackInfo& info, size_t i);
  double Num(const char* key) const;
  bool Bool(const char* key) const;
  std::string Str(const char* key) const;

 private:
  Napi::Value Get(const char* key, bool ok(const Napi::Value&), const char* expected) const;
  Napi::Object obj_;
  std::string what_;
};

at::ScalarType ParseDtype(const std::string& name);
std::string DtypeName(at::ScalarType t);
at::Device ParseDevice(const std::string& name);
std::string DeviceName(const at::Device& d);
std::string ShapeString(const at::Tensor& t);

inline bool HasGrad(const at::Tensor& p) { return p.grad().defined(); }

// Registration helper: exports[name] = fn wrapped in Guard(op = name).
using Body = std::function<Napi::Value(const Napi::CallbackInfo&)>;
void Export(Napi::Env env, Napi::Object exports, const char* name, Body body);

// ---- training hooks one part offers the others ------------------------------------------------------------------
// optim.cc: under CPU bf16 autocast the weight's kept bfloat16 copy (through an autograd cast when it needs a
// gradient), else the weight itself.
at::Tensor AutocastWeight(const at::Tensor& w);
c10::optional<at::Tensor> AutocastWeight(const c10::optional<at::Tensor>& w);
// optim.cc: the kept bfloat16 copy itself (no autograd), undefined where there is none.
at::Tensor KeptBf16(const at::Tensor& w);
// onednn.cc: a float32 3×3 convolution needing gradients through oneDNN's Winograd kernels where it has them;
// false (nothing done) otherwise.
bool TryWinogradConv(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& b,
                     const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
                     const std::vector<int64_t>& dilation, int64_t groups, at::Tensor* out);

// ---- the parts: each registers its exports (addon.cc calls them in this order) --------------------------------
void RegisterCommon(Napi::Env env, Napi::Object exports);       // common.cc: NativeTensor, setErrorClass
void RegisterTensor(Napi::Env env, Napi::Object exports);       // tensor.cc: creation, data, conversion
void RegisterOps(Napi::Env env, Napi::Object exports);          // ops.cc: shapes, elementwise, reductions
void RegisterNN(Napi::Env env, Napi::Object exports);           // nn.cc: layers and losses
void RegisterAutograd(Napi::Env env, Napi::Object exports);     // autograd.cc: backward, gradients, grad mode
void RegisterOptim(Napi::Env env, Napi::Object exports);        // optim.cc: whole SGD and Adam steps
void RegisterAmp(Napi::Env env, Napi::Object exports);          // amp.cc: autocast, gradient unscaling
void RegisterRuntime(Napi::Env env, Napi::Object exports);      // runtime.cc: RNG, threads, CUDA, memory stats
void SetUpCpuMemory();                                          // allocator.cc: malloc settings, caching allocator
void RouteSignalsAway();                                        // signals.cc: Ctrl-C and co. go to an idle thread
void RegisterAllocator(Napi::Env env, Napi::Object exports);    // allocator.cc: allocatorStats
void RegisterCudaGraph(Napi::Env env, Napi::Object exports);    // cuda_graph.cc: record and replay (CUDA builds)
void RegisterDistributed(Napi::Env env, Napi::Object exports);  // distributed.cc: c10d store, Gloo group, Reducer
void RegisterOnednn(Napi::Env env, Napi::Object exports);       // onednn.cc: inference plans on oneDNN primitives

}  // namespace alexnet
