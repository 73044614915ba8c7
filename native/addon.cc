// Entry point of the alexnet-ts native addon: sets up CPU memory, then registers the exports of each part.
#include "common.h"

namespace alexnet {

// The interface version: bump it whenever an export is added, removed or changes its arguments, together with
// ADDON_ABI in src/tensor/binding.ts, which refuses an addon built from other sources.
constexpr int kAbiVersion = 6;

// jpeg.cc: TurboJPEG decoding for the photo pipeline (declared here so that common.h, which every part includes,
// stays as it is).
void RegisterJpeg(Napi::Env env, Napi::Object exports);

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  SetUpCpuMemory();
  RouteSignalsAway();
  exports.Set("abiVersion", Napi::Number::New(env, kAbiVersion));
  RegisterCommon(env, exports);
  RegisterTensor(env, exports);
  RegisterOps(env, exports);
  RegisterNN(env, exports);
  RegisterAutograd(env, exports);
  RegisterOptim(env, exports);
  RegisterAmp(env, exports);
  RegisterRuntime(env, exports);
  RegisterAllocator(env, exports);
  RegisterCudaGraph(env, exports);
  RegisterDistributed(env, exports);
  RegisterOnednn(env, exports);
  RegisterJpeg(env, exports);
  return exports;
}

}  // namespace alexnet

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return alexnet::Init(env, exports); }

NODE_API_MODULE(alexnet_native, InitModule)
