// Entry point of the alexnet-ts native addon: registers the exports of each part and nothing else.
#include "common.h"

#include <cstdlib>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace alexnet {

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
#if defined(__GLIBC__)
  // Tensor buffers of 100 KB to 32 MB, allocated 64-byte aligned and freed every step, fragment glibc's heap
  // under its default *dynamic* mmap threshold: measured here, the C heap grew by ~0.26 MB per training step
  // with constant bytes in use (160 MB free-but-unreturnable after 600 steps). A fixed 64 KB threshold serves
  // those buffers with mmap, returned to the system on free: resident memory stays flat. A user's own
  // MALLOC_MMAP_THRESHOLD_ wins.
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") == nullptr) mallopt(M_MMAP_THRESHOLD, 64 * 1024);
#endif
  auto* data = new AddonData();
  env.SetInstanceData<AddonData>(data);
  data->tensorCtor = Napi::Persistent(TensorWrap::Init(env));
  exports.Set("NativeTensor", data->tensorCtor.Value());

  // The TypeScript side passes its EngineError class so that libtorch failures arrive as that class.
  Export(env, exports, "setErrorClass", [](const Napi::CallbackInfo& info) -> Napi::Value {
    if (!info[0].IsFunction()) throw ArgError("argument 1 must be a class");
    Data(info.Env()).errorCtor = Napi::Persistent(info[0].As<Napi::Function>());
    return info.Env().Undefined();
  });
  exports.Set("abiVersion", Napi::Number::New(env, 2));

  InitTensor(env, exports);
  InitOps(env, exports);
  InitNN(env, exports);
  InitAutograd(env, exports);
  InstallAllocator(env, exports);
  return exports;
}

}  // namespace alexnet

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return alexnet::Init(env, exports); }

NODE_API_MODULE(alexnet_native, InitModule)
