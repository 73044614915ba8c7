// Distributed training over libtorch's own c10d: a TCPStore for rendezvous and small shared values, a Gloo
// process group with the collectives training needs, and c10d::Reducer — PyTorch DDP's engine — which averages
// gradients in buckets from autograd hooks while backward still runs. Three native objects (C10dStore,
// C10dProcessGroup, C10dReducer), constructed from JavaScript with `new`; every method runs inside Guard, so a
// c10d or Gloo failure (a peer that stopped, a timeout, a port in use) arrives as an EngineError.
//
// libtorch 1.x and 2.x differ in one place that matters here: from 2.0 ProcessGroupGloo is a c10d::Backend that a
// c10d::ProcessGroup dispatches to, where in 1.x it is itself the ProcessGroup. MakeGlooGroup hides that. The 2.x
// branch is compiled (syntax-checked) against Debian's libtorch 2.6 headers only.
#include "common.h"

#ifndef USE_C10D_GLOO
// Built without Gloo's headers (scripts/build-addon.js found none): no c10d objects, and a reason to show.
namespace alexnet {
void RegisterDistributed(Napi::Env env, Napi::Object exports) {
  exports.Set("c10dUnavailable",
              Napi::String::New(env,
                                "this native engine was built without c10d: install Gloo's headers "
                                "(apt-get install libgloo-dev) and rebuild it with 'npm run build:addon'"));
}
}  // namespace alexnet
#else

#include <torch/version.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/comm.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace alexnet {

using Millis = std::chrono::milliseconds;
using GroupPtr = c10::intrusive_ptr<c10d::ProcessGroup>;

// Type tags tell the three kinds of handle apart when one is passed back to native code (an object of another
// kind, or a plain object, is refused instead of being reinterpreted).
static const napi_type_tag kStoreTag = {0x6a1c0f3e2b7d4c11ULL, 0x9e2f5a7b3c8d1e01ULL};
static const napi_type_tag kGroupTag = {0x6a1c0f3e2b7d4c11ULL, 0x9e2f5a7b3c8d1e02ULL};
static const napi_type_tag kReducerTag = {0x6a1c0f3e2b7d4c11ULL, 0x9e2f5a7b3c8d1e03ULL};

// Reads an optional string field of an options object: "" when it is absent.
static std::string OptionalStr(const Napi::CallbackInfo& info, size_t i, const char* key) {
  Napi::Value v = info[i].As<Napi::Object>().Get(key);
  if (v.IsUndefined() || v.IsNull()) return "";
  if (!v.IsString()) throw ArgError(std::string("field '") + key + "' must be a string");
  return v.As<Napi::String>().Utf8Value();
}

static int64_t WholeField(const Fields& f, const char* key, int64_t min) {
  double d = f.Num(key);
  if (d != static_cast<double>(static_cast<int64_t>(d)) || d < static_cast<double>(min)) {
    throw ArgError(std::string("field '") + key + "' must be an integer ≥ " + std::to_string(min) + ", got " +
                   std::to_string(d));
  }
  return static_cast<int64_t>(d);
}

template <typename W>
static W* UnwrapTagged(const Napi::Value& v, const napi_type_tag& tag, const char* what) {
  if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&tag)) throw ArgError(std::string("expected ") + what);
  return W::Unwrap(v.As<Napi::Object>());
}

// libtorch 2.4 and later default TCPStore to a libuv server, which Debian's libtorch 2.6 is built without ("use_libuv
// was requested but PyTorch was build without libuv support"); the plain-socket one is in every build. The field
// does not exist before 2.2, hence the detection instead of a version check.
template <typename O, typename = void>
struct HasLibUV : std::false_type {};
template <typename O>
struct HasLibUV<O, std::void_t<decltype(std::declval<O&>().useLibUV)> > : std::true_type {};

template <typename O>
static void UsePlainSockets(O& o) {
  if constexpr (HasLibUV<O>::value) o.useLibUV = false;
}

// ---- the store -----------------------------------------------------------------------------------------------
// new C10dStore({host, port, worldSize, isMaster, timeoutMs}). The master binds host:port (port 0: any free port,
// read back with port()) and waits up to the timeout for the other worldSize - 1 to connect; the others connect,
// retrying until the timeout. Blocking: the JS thread waits, never longer than the timeout.
class StoreWrap : public Napi::ObjectWrap<StoreWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "C10dStore",
                       {InstanceMethod<&StoreWrap::Set>("set"), InstanceMethod<&StoreWrap::Get>("get"),
                        InstanceMethod<&StoreWrap::Add>("add"), InstanceMethod<&StoreWrap::Port>("port")});
  }

  explicit StoreWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<StoreWrap>(info) {
    Guard(info, "C10dStore", [&]() {
      Fields f(info, 0);
      c10d::TCPStoreOptions o;
      o.port = static_cast<std::uint16_t>(WholeField(f, "port", 0));
      o.isServer = f.Bool("isMaster");
      o.numWorkers = static_cast<std::size_t>(WholeField(f, "worldSize", 1));
      o.waitWorkers = true;
      o.timeout = Millis(WholeField(f, "timeoutMs", 1));
      UsePlainSockets(o);
      store_ = Connect(f.Str("host"), o);
      return info.Env().Undefined();
    });
    info.This().As<Napi::Object>().TypeTag(&kStoreTag);
  }

  const c10::intrusive_ptr<c10d::TCPStore>& store() const { return store_; }

 private:
  // libtorch 1.13's sockets give up on EINTR: a signal that reaches Node while the store connects or waits for
  // the ranks (SIGCHLD when a child process ends) would fail the rendezvous. Try again with what is left of the
  // timeout.
  static c10::intrusive_ptr<c10d::TCPStore> Connect(const std::string& host, c10d::TCPStoreOptions o) {
    const auto deadline = std::chrono::steady_clock::now() + o.timeout;
    for (;;) {
      try {
        return c10::make_intrusive<c10d::TCPStore>(host, o);
      } catch (const std::exception& e) {  // std::system_error from the socket, c10::Error from the store
        auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
        if (std::string(e.what()).find("Interrupted system call") == std::string::npos || left <= Millis(0)) throw;
        o.timeout = left;
      }
    }
  }

  // set(key, value: string | Uint8Array)
  Napi::Value Set(const Napi::CallbackInfo& info) {
    return Guard(info, "store.set", [&]() {
      std::vector<uint8_t> bytes;
      if (info[1].IsString()) {
        std::string s = info[1].As<Napi::String>().Utf8Value();
        bytes.assign(s.begin(), s.end());
      } else if (info[1].IsTypedArray() || info[1].IsBuffer()) {
        Napi::TypedArray a = info[1].As<Napi::TypedArray>();
        const uint8_t* p = static_cast<const uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset();
        bytes.assign(p, p + a.ByteLength());
      } else {
        throw ArgError("argument 2 must be a string or a Uint8Array");
      }
      store_->set(Str(info, 0), bytes);
      return info.Env().Undefined();
    });
  }

  // get(key) -> Buffer: waits (up to the timeout) until some rank has set the key
  Napi::Value Get(const Napi::CallbackInfo& info) {
    return Guard(info, "store.get", [&]() -> Napi::Value {
      std::vector<uint8_t> v = store_->get(Str(info, 0));
      return Napi::Buffer<uint8_t>::Copy(info.Env(), v.data(), v.size());
    });
  }

  // add(key, delta) -> the counter's new value (a missing key counts from 0)
  Napi::Value Add(const Napi::CallbackInfo& info) {
    return Guard(info, "store.add", [&]() -> Napi::Value {
      return Napi::Number::New(info.Env(), static_cast<double>(store_->add(Str(info, 0), Int(info, 1))));
    });
  }

  Napi::Value Port(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), store_->getPort()); }

  c10::intrusive_ptr<c10d::TCPStore> store_;
};

// ---- the process group ---------------------------------------------------------------------------------------
// Gloo binds to `iface` (a network interface, as GLOO_SOCKET_IFNAME), else to `host` (an address or name of this
// machine: what a network namespace needs), else to what this machine's hostname resolves to.
static std::shared_ptr< ::gloo::transport::Device> GlooDevice(const std::string& iface, const std::string& host) {
  if (!iface.empty()) return c10d::ProcessGroupGloo::createDeviceForInterface(iface);
  if (!host.empty()) return c10d::ProcessGroupGloo::createDeviceForHostname(host);
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

static GroupPtr MakeGlooGroup(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size, Millis timeout,
                              std::shared_ptr< ::gloo::transport::Device> device) {
  auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
  opts->devices.push_back(std::move(device));
#if TORCH_VERSION_MAJOR >= 2
  auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, opts);
#if TORCH_VERSION_MAJOR > 2 || TORCH_VERSION_MINOR >= 6
  auto pg = c10::make_intrusive<c10d::ProcessGroup>(store, rank, size);
  pg->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
#else
  auto pg = c10::make_intrusive<c10d::ProcessGroup>(store, rank, size,
                                                    c10::make_intrusive<c10d::ProcessGroup::Options>("gloo", timeout));
#endif
  // Gloo serves CPU tensors, and CUDA tensors in CUDA builds.
  pg->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, gloo);
  pg->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::GLOO, gloo);
  return pg;
#else
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, opts);
#endif
}

// Waits for a collective. Gloo enforces the group's timeout itself (and fails at once when a peer's connection
// closes); the wait's own limit, a little longer, is the backstop that keeps the JS thread from waiting forever.
static void Finish(const c10::intrusive_ptr<c10d::Work>& work, Millis timeout) { work->wait(timeout + Millis(2000)); }

// Waits for a collective on a libuv thread and settles a Promise: allreduceAsync.
class WaitWorker : public Napi::AsyncWorker {
 public:
  WaitWorker(Napi::Env env, c10::intrusive_ptr<c10d::Work> work, std::vector<at::Tensor> tensors, double divide,
             Millis timeout)
      : Napi::AsyncWorker(env, "c10dWait"),
        deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)),
        tensors_(std::move(tensors)),
        divide_(divide),
        timeout_(timeout) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      Finish(work_, timeout_);
      if (divide_ != 1.0) {
        at::NoGradGuard ng;
        for (at::Tensor& t : tensors_) t.div_(divide_);
      }
    } catch (const c10::Error& e) {
      SetError(e.what_without_backtrace());
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }

  void OnOK() override { deferred_.Resolve(Env().Undefined()); }

  void OnError(const Napi::Error& e) override {
    Napi::Env env = Env();
    std::string msg = e.Message();
    std::string first = msg.substr(0, msg.find('\n'));
    std::string full = "processGroup.allreduceAsync: " + first;
    AddonData& d = Data(env);
    Napi::Object err =
        d.errorCtor.IsEmpty() ? Napi::Error::New(env, full).Value() : d.errorCtor.New({Napi::String::New(env, full)});
    err.Set("op", Napi::String::New(env, "processGroup.allreduceAsync"));
    err.Set("shapes", Napi::String::New(env, ""));
    err.Set("detail", Napi::String::New(env, first));
    deferred_.Reject(err);
  }

 private:
  Napi::Promise::Deferred deferred_;
  c10::intrusive_ptr<c10d::Work> work_;
  std::vector<at::Tensor> tensors_;
  double divide_;
  Millis timeout_;
};

// new C10dProcessGroup(store, {rank, worldSize, timeoutMs, backend?: 'gloo'|'nccl', iface?, host?}): the ranks
// meet through the store (all of them must construct the group; blocking, up to the timeout).
class GroupWrap : public Napi::ObjectWrap<GroupWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "C10dProcessGroup",
                       {InstanceMethod<&GroupWrap::Allreduce>("allreduce"),
                        InstanceMethod<&GroupWrap::AllreduceAsync>("allreduceAsync"),
                        InstanceMethod<&GroupWrap::Broadcast>("broadcast"),
                        InstanceMethod<&GroupWrap::BroadcastCoalesced>("broadcastCoalesced"),
                        InstanceMethod<&GroupWrap::Allgather>("allgather"),
                        InstanceMethod<&GroupWrap::Barrier>("barrier"), InstanceMethod<&GroupWrap::Send>("send"),
                        InstanceMethod<&GroupWrap::Recv>("recv"), InstanceMethod<&GroupWrap::Destroy>("destroy")});
  }

  explicit GroupWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GroupWrap>(info) {
    Guard(info, "C10dProcessGroup", [&]() {
      StoreWrap* store = UnwrapTagged<StoreWrap>(info[0], kStoreTag, "argument 1 to be a C10dStore");
      Fields f(info, 1);
      size_ = static_cast<int>(WholeField(f, "worldSize", 1));
      rank_ = static_cast<int>(WholeField(f, "rank", 0));
      if (rank_ >= size_)
        throw ArgError("rank " + std::to_string(rank_) + " is not below worldSize " + std::to_string(size_));
      timeout_ = Millis(WholeField(f, "timeoutMs", 1));
      std::string backend = OptionalStr(info, 1, "backend");
      if (backend == "nccl") throw ArgError("this addon was built without NCCL: use the gloo backend");
      if (!backend.empty() && backend != "gloo") throw ArgError("unknown backend '" + backend + "' (expected gloo)");
      auto device = GlooDevice(OptionalStr(info, 1, "iface"), OptionalStr(info, 1, "host"));
      pg_ = MakeGlooGroup(c10::intrusive_ptr<c10d::Store>(store->store()), rank_, size_, timeout_, device);
      return info.Env().Undefined();
    });
    info.This().As<Napi::Object>().TypeTag(&kGroupTag);
  }

  const GroupPtr& group() const {
    if (!pg_) throw ArgError("the process group was destroyed");
    return pg_;
  }
  Millis timeout() const { return timeout_; }

 private:
  // allreduce(tensors, average): sums (then divides by the world size) in place, one collective for the list
  Napi::Value Allreduce(const Napi::CallbackInfo& info) {
    return Guard(info, "processGroup.allreduce", [&]() {
      std::vector<at::Tensor> ts = TList(info, 0);
      for (const at::Tensor& t : ts) CheckDense(t);
      Finish(group()->allreduce(ts), timeout_);
      if (Present(info, 1) && Bool(info, 1)) {
        at::NoGradGuard ng;
        for (at::Tensor& t : ts) t.div_(static_cast<double>(size_));
      }
      return info.Env().Undefined();
    });
  }

  // allreduceAsync(tensors, average) -> Promise<void>: the wait happens off the JS thread; leave the tensors
  // alone until it settles.
  Napi::Value AllreduceAsync(const Napi::CallbackInfo& info) {
    return Guard(info, "processGroup.allreduceAsync", [&]() -> Napi::Value {
      std::vector<at::Tensor> ts = TList(info, 0);
      for (const at::Tensor& t : ts) CheckDense(t);
      double divide = Present(info, 1) && Bool(info, 1) ? static_cast<double>(size_) : 1.0;
      auto* worker = new WaitWorker(info.Env(), group()->allreduce(ts), ts, divide, timeout_);
      Napi::Promise p = worker->Promise();
      worker->Queue();
      return p;
    });
  }

  // broadcast(tensors, root): every rank's tensors become root's
  Napi::Value Broadcast(const Napi::CallbackInfo& info) {
    return Guard(info, "processGroup.broadcast", [&]() {
      std::vector<at::Tensor> ts = TList(info, 0);
      c10d::BroadcastOptions o;
      o.rootRank = Root(info, 1);
      at::NoGradGuard ng;
      for (at::Tensor& t : ts) {
        CheckDense(t);
        std::vector<at::Tensor> one{t};
        Finish(group()->broadcast(one, o), timeout_);
      }
      return info.Env().Undefined();
    });
  }

  // broadcastCoalesced(tensors, root): as broadcast, packed into ≤ 250 MB messages (DDP's start-up copy of
  // parameters and buffers from rank 0)
  Napi::Value BroadcastCoalesced(const Napi::CallbackInfo& info) {
    return Guard(info, "processGroup.broadcastCoalesced", [&]() {
      std::vector<at::Tensor> ts = TList(info, 0);
      for (const at::Tensor& t : ts) CheckDense(t);
      at::NoGradGuard ng;
      c10d::broadcast_coalesced(group(), ts, 250 * 1024 * 1024, Root(info, 1));
      return info.Env().Undefined();
    });
  }

  // allgather(tensor) -> one tensor per rank, in rank order
  Napi::Value Allgather(const Napi::CallbackInfo& info) {
    return Guard(info, "processGroup.allgather", [&]() -> Napi::Value {
      const at::Tensor& t = T(info, 0);
      CheckDense(t);
      std::vector<at::Tensor> in{t};
      std::vector<std::vector<at::Tensor> > out(1);
      for (int r = 0; r < size_; r++) out[0].push_back(at::empty_like(t, at::MemoryFormat::Contiguous));
      Finish(group()->allgather(out, in), timeout_);
      return WrapList(info.Env(), out[0]);
    });
  }

  Napi::Value Barrier(const Napi::CallbackInfo& info) {
    return Guard(info, "processGroup.barrier", [&]() {
      Finish(group()->barrier(), timeout_);
      return info.Env().Undefined();
    });
  }

  // send(tensor, dstRank, tag)
  Napi::Value Send(const Napi::CallbackInfo& info) {
    return Guard(info, "processGroup.send", [&]() {
      std::vector<at::Tensor> ts{T(info, 0).contiguous()};
      Finish(group()->send(ts, Peer(info, 1), static_cast<int>(Int(info, 2))), timeout_);
      return info.Env().Undefined();
    });
  }

  // recv(tensor, srcRank, tag): fills the tensor (contiguous, of the sent shape and dtype)
  Napi::Value Recv(const Napi::CallbackInfo& info) {
    return Guard(info, "processGroup.recv", [&]() {
      const at::Tensor& t = T(info, 0);
      CheckDense(t);
      std::vector<at::Tensor> ts{t};
      Finish(group()->recv(ts, Peer(info, 1), static_cast<int>(Int(info, 2))), timeout_);
      return info.Env().Undefined();
    });
  }

  // destroy(): drops this object's reference to the group (its threads and connections end with the last one)
  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    pg_.reset();
    return info.Env().Undefined();
  }

  int Root(const Napi::CallbackInfo& info, size_t i) const {
    int64_t r = Present(info, i) ? Int(info, i) : 0;
    if (r < 0 || r >= size_)
      throw ArgError("root rank " + std::to_string(r) + " is not in 0.." + std::to_string(size_ - 1));
    return static_cast<int>(r);
  }

  int Peer(const Napi::CallbackInfo& info, size_t i) const {
    int64_t r = Int(info, i);
    if (r < 0 || r >= size_ || r == rank_) {
      throw ArgError("peer rank " + std::to_string(r) + " must be another rank in 0.." + std::to_string(size_ - 1));
    }
    return static_cast<int>(r);
  }

  // Collectives work on the tensor's memory in place: a strided view would be written through a copy.
  static void CheckDense(const at::Tensor& t) {
    if (!t.is_contiguous()) throw ArgError("collectives need contiguous tensors, got " + ShapeString(t));
  }

  GroupPtr pg_;
  int rank_ = 0;
  int size_ = 1;
  Millis timeout_{0};
};

// ---- the reducer ---------------------------------------------------------------------------------------------
// c10d::Reducer keeps its timer protected (PyTorch reads it through its DDP logger, a friend): a subclass reads it.
class TimedReducer : public c10d::Reducer {
 public:
  using c10d::Reducer::Reducer;

  // Nanoseconds between two of this step's events, or -1 when one was not recorded.
  int64_t Between(c10d::Timer::Event a, c10d::Timer::Event b) {
    if (!timer_) return -1;
    auto d = timer_->measureDifference(a, b);
    return d ? *d : -1;
  }
};

// new C10dReducer(group, params, {bucketCapMB, firstBucketMB}): DDP's gradient averaging over `params` (the
// model's parameters in registration order, all requiring grad). Checks first that every rank passes parameters
// of the same count, shapes and dtypes.
class ReducerWrap : public Napi::ObjectWrap<ReducerWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(
        env, "C10dReducer",
        {InstanceMethod<&ReducerWrap::PrepareForForward>("prepareForForward"),
         InstanceMethod<&ReducerWrap::PrepareForBackward>("prepareForBackward"),
         InstanceMethod<&ReducerWrap::Timings>("timings"), InstanceMethod<&ReducerWrap::BucketCount>("bucketCount"),
         InstanceMethod<&ReducerWrap::Dispose>("dispose")});
  }

  explicit ReducerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ReducerWrap>(info) {
    Guard(info, "C10dReducer", [&]() {
      GroupWrap* g = UnwrapTagged<GroupWrap>(info[0], kGroupTag, "argument 1 to be a C10dProcessGroup");
      std::vector<at::Tensor> params = TList(info, 1);
      Fields f(info, 2);
      double cap = f.Num("bucketCapMB"), first = f.Num("firstBucketMB");
      if (!(cap > 0) || !(first > 0)) throw ArgError("bucketCapMB and firstBucketMB must be positive");
      Build(g->group(), params, static_cast<int64_t>(cap * 1024 * 1024), static_cast<int64_t>(first * 1024 * 1024));
      return info.Env().Undefined();
    });
    info.This().As<Napi::Object>().TypeTag(&kReducerTag);
  }

 private:
  void Build(const GroupPtr& pg, const std::vector<at::Tensor>& params, int64_t capBytes, int64_t firstBytes) {
    if (params.empty()) throw ArgError("the reducer needs at least one parameter");
    for (size_t i = 0; i < params.size(); i++) {
      if (!params[i].requires_grad() || !params[i].is_leaf()) {
        throw ArgError("parameter " + std::to_string(i) + " must be a leaf tensor that requires grad");
      }
    }
    c10d::verify_params_across_processes(pg, params, {});
    std::vector<bool> sparse(params.size(), false);
    std::vector<std::vector<size_t> > buckets;
    std::vector<size_t> limits;
    std::tie(buckets, limits) = c10d::compute_bucket_assignment_by_size(
        params, {static_cast<size_t>(firstBytes), static_cast<size_t>(capBytes)}, sparse);
    // As DDP: the last parameters' gradients come first in backward, so their bucket goes first. After the first
    // step the reducer rebuilds the buckets in the order gradients actually arrived (prepareForForward).
    std::reverse(buckets.begin(), buckets.end());
    std::reverse(limits.begin(), limits.end());
    reducer_ = std::make_unique<TimedReducer>(params, buckets, limits, pg, sparse, capBytes,
                                              /*find_unused_parameters=*/false, /*gradient_as_bucket_view=*/false,
                                              std::unordered_map<size_t, std::string>(), firstBytes);
    reducer_->set_ddp_runtime_logging_sample_rate(1);  // time every step, not 1 in 100
  }

  TimedReducer& reducer() {
    if (!reducer_) throw ArgError("the reducer was disposed");
    return *reducer_;
  }

  // prepareForForward(): once per training step, before the forward pass: starts the step's timer and, after
  // the first step, rebuilds the buckets in the order backward produced the gradients (a collective: every rank
  // calls it). Optional: prepareForBackward does it when it was not called.
  Napi::Value PrepareForForward(const Napi::CallbackInfo& info) {
    return Guard(info, "reducer.prepareForForward", [&]() {
      StartStep();
      return info.Env().Undefined();
    });
  }

  // prepareForBackward(): arms the autograd hooks, so that the next backward() averages the gradients
  Napi::Value PrepareForBackward(const Napi::CallbackInfo& info) {
    return Guard(info, "reducer.prepareForBackward", [&]() {
      if (!stepStarted_) StartStep();
      stepStarted_ = false;
      reducer().prepare_for_backward(std::vector<at::Tensor>());
      return info.Env().Undefined();
    });
  }

  void StartStep() {
    reducer().prepare_for_forward();
    reducer().rebuild_buckets();
    stepStarted_ = true;
  }

  // timings() -> the last step's backward compute, communication (first bucket launched to last one finished)
  // and the communication left after backward's compute ended, in milliseconds (-1: not recorded)
  Napi::Value Timings(const Napi::CallbackInfo& info) {
    return Guard(info, "reducer.timings", [&]() -> Napi::Value {
      using E = c10d::Timer::Event;
      auto ms = [&](E a, E b) {
        int64_t ns = reducer().Between(a, b);
        return Napi::Number::New(info.Env(), ns < 0 ? -1.0 : static_cast<double>(ns) / 1e6);
      };
      Napi::Object o = Napi::Object::New(info.Env());
      o.Set("backwardComputeMs", ms(E::kBackwardComputeStart, E::kBackwardComputeEnd));
      o.Set("backwardCommMs", ms(E::kBackwardCommStart, E::kBackwardCommEnd));
      o.Set("commAfterComputeMs", ms(E::kBackwardComputeEnd, E::kBackwardCommEnd));
      return o;
    });
  }

  Napi::Value BucketCount(const Napi::CallbackInfo& info) {
    return Guard(info, "reducer.bucketCount", [&]() -> Napi::Value {
      return Napi::Number::New(info.Env(), static_cast<double>(reducer().get_grad_buckets(true).size()));
    });
  }

  // dispose(): removes the autograd hooks now instead of at garbage collection
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    return Guard(info, "reducer.dispose", [&]() {
      reducer_.reset();
      return info.Env().Undefined();
    });
  }

  std::unique_ptr<TimedReducer> reducer_;
  bool stepStarted_ = false;  // prepareForForward ran since the last prepareForBackward
};

void RegisterDistributed(Napi::Env env, Napi::Object exports) {
  exports.Set("C10dStore", StoreWrap::Init(env));
  exports.Set("C10dProcessGroup", GroupWrap::Init(env));
  exports.Set("C10dReducer", ReducerWrap::Init(env));
}

}  // namespace alexnet

#endif  // USE_C10D_GLOO
