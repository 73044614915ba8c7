// The runtime: random number generator state, CPU threads, CUDA and cuDNN switches, build and memory facts.
#include "common.h"

#include <ATen/Parallel.h>

#include <mutex>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace alexnet {

// ---- random numbers ----------------------------------------------------------------------------------------
// manualSeed(seed): seeds every default generator (CPU and CUDA)
static Napi::Value ManualSeed(const Napi::CallbackInfo& info) {
  torch::manual_seed(static_cast<uint64_t>(Int(info, 0)));
  return info.Env().Undefined();
}

// getRngState() -> the default CPU generator's state as a uint8 tensor
static Napi::Value GetRngState(const Napi::CallbackInfo& info) {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return Wrap(info.Env(), gen.get_state());
}

// setRngState(state): restores a state from getRngState()
static Napi::Value SetRngState(const Napi::CallbackInfo& info) {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(T(info, 0));
  return info.Env().Undefined();
}

// ---- threads and devices -----------------------------------------------------------------------------------
// setNumThreads(n): libtorch's intra-op thread pool size
static Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  int64_t n = Int(info, 0);
  if (n < 1) throw ArgError("thread count must be >= 1");
  at::set_num_threads(static_cast<int>(n));
  return info.Env().Undefined();
}

static Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), at::get_num_threads());
}

// setCudnnBenchmark(on): let cuDNN time its algorithms for each new input shape
static Napi::Value SetCudnnBenchmark(const Napi::CallbackInfo& info) {
  at::globalContext().setBenchmarkCuDNN(Bool(info, 0));
  return info.Env().Undefined();
}

// cudaSynchronize(): waits for the GPU's queued work; nothing without CUDA
static Napi::Value CudaSynchronize(const Napi::CallbackInfo& info) {
  if (torch::cuda::is_available()) torch::cuda::synchronize();
  return info.Env().Undefined();
}

// runtimeInfo() -> the libtorch version compiled against, what it can use, its thread count
static Napi::Value RuntimeInfo(const Napi::CallbackInfo& info) {
  Napi::Env e = info.Env();
  Napi::Object o = Napi::Object::New(e);
  o.Set("libtorchVersion", TORCH_VERSION);
  o.Set("cudaAvailable", torch::cuda::is_available());
  o.Set("cudaDeviceCount", static_cast<double>(torch::cuda::device_count()));
  o.Set("cudnnAvailable", torch::cuda::cudnn_is_available());
  o.Set("mkldnnAvailable", at::hasMKLDNN());
  o.Set("numThreads", at::get_num_threads());
  return o;
}

// memoryStats(): tensor handles and the C allocator's view (bytes), for diagnosing memory growth.
static Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
  Napi::Env e = info.Env();
  Napi::Object o = Napi::Object::New(e);
  HandleCounts counts = CountHandles();
  o.Set("handles", static_cast<double>(counts.handles));
  o.Set("liveTensors", static_cast<double>(counts.liveTensors));
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  struct mallinfo2 mi = mallinfo2();
  o.Set("heapBytes", static_cast<double>(mi.arena));
  o.Set("heapInUse", static_cast<double>(mi.uordblks));
  o.Set("heapFree", static_cast<double>(mi.fordblks));
  o.Set("mmapBytes", static_cast<double>(mi.hblkhd));
#endif
  return o;
}

void RegisterRuntime(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "manualSeed", ManualSeed);
  Export(env, exports, "getRngState", GetRngState);
  Export(env, exports, "setRngState", SetRngState);
  Export(env, exports, "setNumThreads", SetNumThreads);
  Export(env, exports, "getNumThreads", GetNumThreads);
  Export(env, exports, "setCudnnBenchmark", SetCudnnBenchmark);
  Export(env, exports, "cudaSynchronize", CudaSynchronize);
  Export(env, exports, "runtimeInfo", RuntimeInfo);
  Export(env, exports, "memoryStats", MemoryStats);
}

}  // namespace alexnet
