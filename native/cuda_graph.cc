// CUDA graphs: a whole training step (forward, backward, optimiser) recorded once and replayed with one call, so
// that the GPU no longer waits for JavaScript to queue each of its ~150 kernels (measured on an H200: the step has
// ~1.7 ms of fixed cost per batch beside ~21 µs per image). Compiled only against a CUDA libtorch whose CUDA headers
// build-addon.js finds (it defines ALEXNET_CUDA_GRAPHS); elsewhere these exports do not exist.
//
// A graph cannot be recorded on the default stream, and autograd's gradient accumulators remember the stream they
// were made on: so cudaUseSideStream first moves all of this thread's CUDA work (the ordinary warm-up steps too) to
// a side stream, and recording and replays happen there, after the copies of the next batch into the static
// inputs. (Measured on an H200 with PyTorch 2.11: recording on a side stream after warm-up steps on the default
// stream fails in backward, "operation would make the legacy stream depend on a capturing blocking stream".)
// libtorch's CUDAGraph gives the recording its own memory pool and registers the default CUDA generator, so dropout
// draws new numbers on every replay.
#include "common.h"

#ifdef ALEXNET_CUDA_GRAPHS
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>

#include <map>
#include <memory>
#endif

namespace alexnet {

#ifdef ALEXNET_CUDA_GRAPHS

namespace {

struct Recording {
  at::cuda::CUDAGraph graph;
  bool recording = false;
};

std::map<int64_t, std::unique_ptr<Recording>>& Graphs() {
  static auto* graphs = new std::map<int64_t, std::unique_ptr<Recording>>();  // never destroyed (exit order)
  return *graphs;
}
int64_t g_nextId = 1;

Recording& Find(int64_t id) {
  auto it = Graphs().find(id);
  if (it == Graphs().end()) throw ArgError("no CUDA graph with id " + std::to_string(id));
  return *it->second;
}

// Ends a recording (also one that failed), on the stream it began on.
void StopRecording(Recording& r) {
  if (!r.recording) return;
  r.recording = false;
  r.graph.capture_end();
}

}  // namespace

// cudaUseSideStream(deviceIndex): this thread's CUDA work goes to a side stream from now on (after the work queued
// so far has finished).
static Napi::Value UseSideStream(const Napi::CallbackInfo& info) {
  auto device = static_cast<c10::DeviceIndex>(Num(info, 0));
  if (c10::cuda::getCurrentCUDAStream(device) == c10::cuda::getDefaultCUDAStream(device)) {
    c10::cuda::device_synchronize();
    c10::cuda::setCurrentCUDAStream(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device));
  }
  return info.Env().Undefined();
}

// cudaGraphBegin() -> id: from now on the CUDA work queued on this thread's stream is recorded, not run.
static Napi::Value GraphBegin(const Napi::CallbackInfo& info) {
  if (c10::cuda::getCurrentCUDAStream() == c10::cuda::getDefaultCUDAStream()) {
    throw ArgError("a CUDA graph is recorded on a side stream: call cudaUseSideStream first");
  }
  auto r = std::make_unique<Recording>();
  r->graph.capture_begin();
  r->recording = true;
  int64_t id = g_nextId++;
  Graphs()[id] = std::move(r);
  return Napi::Number::New(info.Env(), static_cast<double>(id));
}

// cudaGraphEnd(id): ends the recording; the graph is ready to replay.
static Napi::Value GraphEnd(const Napi::CallbackInfo& info) {
  int64_t id = static_cast<int64_t>(Num(info, 0));
  Recording& r = Find(id);
  if (!r.recording) throw ArgError("CUDA graph " + std::to_string(id) + " is not recording");
  try {
    StopRecording(r);
  } catch (...) {
    Graphs().erase(id);
    throw;
  }
  return info.Env().Undefined();
}

// cudaGraphReplay(id): runs the recorded work again, on the current stream.
static Napi::Value GraphReplay(const Napi::CallbackInfo& info) {
  Recording& r = Find(static_cast<int64_t>(Num(info, 0)));
  if (r.recording) throw ArgError("a CUDA graph cannot be replayed while it is being recorded");
  r.graph.replay();
  return info.Env().Undefined();
}

// cudaGraphRelease(id): frees the graph and its memory pool (ending a recording that an error interrupted).
static Napi::Value GraphRelease(const Napi::CallbackInfo& info) {
  int64_t id = static_cast<int64_t>(Num(info, 0));
  auto it = Graphs().find(id);
  if (it == Graphs().end()) return info.Env().Undefined();
  try {
    StopRecording(*it->second);
  } catch (...) {
    // The recording was invalid (the error that brought us here said why); its graph is discarded anyway.
  }
  Graphs().erase(it);
  return info.Env().Undefined();
}

void RegisterCudaGraph(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "cudaUseSideStream", UseSideStream);
  Export(env, exports, "cudaGraphBegin", GraphBegin);
  Export(env, exports, "cudaGraphEnd", GraphEnd);
  Export(env, exports, "cudaGraphReplay", GraphReplay);
  Export(env, exports, "cudaGraphRelease", GraphRelease);
}

#else

void RegisterCudaGraph(Napi::Env env, Napi::Object exports) {}

#endif

}  // namespace alexnet
