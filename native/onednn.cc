// Inference through oneDNN's primitives directly, the library libtorch's CPU convolutions already run on.
//
// Why: libtorch 1.13's eager CPU path leaves speed on the table in inference (measured, Zen 5, 2 threads, batch 32,
// torchvision's AlexNet): every ReLU is a separate pass over the activations (~10% of the time), the fully
// connected layers run through OpenBLAS at ~90 GFLOP/s (a quarter of the time in float32), pooling runs in ATen, and
// under autocast the weights are cast to bfloat16 on every call. Here a model's layers become one chain of oneDNN
// primitives: weights reordered once into the layout each primitive wants (and to bfloat16 once), ReLU fused into
// the convolution or inner product as a post-op, pooling and LRN on the blocked layouts without reorders, the
// flatten folded into the first inner product (which takes the 4-D activations with 4-D weights). The kernels are
// oneDNN's own; nothing here computes.
//
// Built only against the oneDNN that libtorch links (Debian: libdnnl-dev 2.x beside libtorch-dev); without it the
// addon says so (onednnAvailable) and inference stays on libtorch's ops.
#include "common.h"

#if defined(ALEXNET_ONEDNN)
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/custom_function.h>
#include <dnnl.hpp>

#include <deque>
#include <mutex>
#endif

namespace alexnet {

#if defined(ALEXNET_ONEDNN)
namespace {

using dnnl::memory;
using Dims = memory::dims;
using Tag = memory::format_tag;
using Dt = memory::data_type;

dnnl::engine& Engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

enum class Kind { kConv, kLinear, kMaxPool, kAvgPool, kLrn };

struct Layer {
  Kind kind;
  at::Tensor weight, bias;  // float32 on the CPU: the model's weights until packed, a copy of its bias
  Dims wshape;              // the weight's sizes (the tensor itself is let go once packed)
  Dims kernel, stride, padding, dilation;
  int64_t groups = 1;
  bool relu = false, ceil = false;
  int64_t size = 0;
  double alpha = 0, beta = 0, k = 0;
  std::vector<std::pair<memory::desc, memory>> packed;  // the weights in each layout a primitive asked for
};

struct Step {
  dnnl::primitive prim;
  std::unordered_map<int, memory> args;
};

// The primitives for one input geometry (batch, height, width, layout).
struct Chain {
  std::vector<Step> steps;
  std::vector<memory> keep;  // buffers that another memory object views
  memory input, output;
  int64_t classes = 0;
  std::vector<std::string> impls;
};

struct Plan {
  std::vector<Layer> layers;
  bool bf16 = false, released = false;
  std::mutex mu;
  std::deque<std::pair<std::string, std::unique_ptr<Chain>>> chains;  // most recent first, at most kChains
  static constexpr size_t kChains = 8;
};

// A float32 tensor's view as oneDNN memory (its own strides: channels-last weights need no copy).
memory::desc ViewDesc(const at::Tensor& t, const Dims& dims) {
  at::Tensor v = t.view(dims);
  return memory::desc(dims, Dt::f32, Dims(v.strides().begin(), v.strides().end()));
}

// The weights in the layout `want`, reordered (and converted to bfloat16) once. The first packing reads the model's
// tensor; later layouts (another batch size may pick one) are reordered from the first packed copy, so the plan
// holds no reference to the model's float32 weights after its first run.
memory Packed(Layer& l, const memory::desc& want, const Dims& wd, dnnl::stream& s) {
  for (auto& [d, m] : l.packed)
    if (d == want) return m;
  memory src =
      l.packed.empty() ? memory(ViewDesc(l.weight, wd), Engine(), l.weight.data_ptr()) : l.packed.front().second;
  memory dst(want, Engine());
  dnnl::reorder(src, dst).execute(s, src, dst);
  s.wait();
  l.packed.emplace_back(want, dst);
  l.weight = at::Tensor();
  return dst;
}

dnnl::primitive_attr ReluAttr(bool relu) {
  dnnl::primitive_attr a;
  if (relu) {
    dnnl::post_ops ops;
    ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
    a.set_post_ops(ops);
  }
  return a;
}

// The growing chain: `cur` is the activation the next primitive reads.
struct Builder {
  Chain& c;
  dnnl::stream& s;
  memory cur;
  Dt act;

  // A reorder of the current activations into `to`, which becomes current.
  void MoveTo(const memory& to) {
    c.steps.push_back({dnnl::reorder(cur, to), {{DNNL_ARG_FROM, cur}, {DNNL_ARG_TO, to}}});
    cur = to;
  }
  void Ensure(const memory::desc& want) {
    if (cur.get_desc() != want) MoveTo(memory(want, Engine()));
  }
  Dims dims() const { return cur.get_desc().dims(); }

  template <typename P>
  void Add(const typename P::primitive_desc& pd, std::unordered_map<int, memory> args, const char* what) {
    memory dst(pd.dst_desc(), Engine());
    args[DNNL_ARG_SRC] = cur;
    args[DNNL_ARG_DST] = dst;
    c.steps.push_back({P(pd), std::move(args)});
    c.impls.push_back(std::string(what) + ":" + pd.impl_info_str());
    cur = dst;
  }

  static memory::desc BiasDesc(const Layer& l) {
    return l.bias.defined() ? memory::desc({l.bias.size(0)}, Dt::f32, Tag::a) : memory::desc();
  }

  // The weights packed as the primitive asked, and the bias (float32, read in place).
  std::unordered_map<int, memory> Parameters(Layer& l, const memory::desc& weights, const Dims& wd) {
    std::unordered_map<int, memory> args{{DNNL_ARG_WEIGHTS, Packed(l, weights, wd, s)}};
    if (l.bias.defined()) args[DNNL_ARG_BIAS] = memory(BiasDesc(l), Engine(), l.bias.data_ptr());
    return args;
  }

  void Conv(Layer& l) {
    const Dims in = dims();
    const int64_t oc = l.wshape[0], kh = l.wshape[2], kw = l.wshape[3], g = l.groups;
    auto out = [&](int i, int64_t k) {
      return (in[i + 2] + 2 * l.padding[i] - l.dilation[i] * (k - 1) - 1) / l.stride[i] + 1;
    };
    const Dims dst{in[0], oc, out(0, kh), out(1, kw)};
    const Dims wd = g > 1 ? Dims{g, oc / g, in[1] / g, kh, kw} : Dims{oc, in[1], kh, kw};
    const Dims dil{l.dilation[0] - 1, l.dilation[1] - 1};
    const memory::desc bias = BiasDesc(l);
    auto make = [&](Tag io) {
      dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                        memory::desc(in, act, io), memory::desc(wd, act, Tag::any), bias,
                                        memory::desc(dst, act, io), l.stride, dil, l.padding, l.padding);
      return dnnl::convolution_forward::primitive_desc(d, ReluAttr(l.relu), Engine());
    };
    dnnl::convolution_forward::primitive_desc pd = make(Tag::any);
    // Under AVX2 a 3-channel first layer gets a GEMM kernel writing plain NCHW, on which the next pooling runs a
    // scalar loop (40 ms of a 32-image AlexNet batch): channels-last in and out there, as libtorch runs it, unless
    // that finds only the reference kernel.
    if (pd.dst_desc() == memory::desc(dst, act, Tag::abcd)) {
      dnnl::convolution_forward::primitive_desc cl = make(Tag::acdb);
      if (std::string(cl.impl_info_str()).rfind("ref", 0) != 0) pd = cl;
    }
    Ensure(pd.src_desc());
    Add<dnnl::convolution_forward>(pd, Parameters(l, pd.weights_desc(), wd), "conv");
  }

  void Linear(Layer& l) {
    Dims in = dims();
    const int64_t oc = l.wshape[0];
    if (in.size() == 4) {
      // The flatten: the activations in plain NCHW order, read as (N, C·H·W) in place. (A 4-D inner product would
      // skip the reorder, but oneDNN 2.6 runs it through a plain GEMM at half the speed of its brgemm kernels.)
      Ensure(memory::desc(in, act, Tag::abcd));
      Reinterpret({in[0], in[1] * in[2] * in[3]});
      in = dims();
    }
    const Dims wd{oc, in[1]};
    dnnl::inner_product_forward::desc d(dnnl::prop_kind::forward_inference, memory::desc(in, act, Tag::any),
                                        memory::desc(wd, act, Tag::any), BiasDesc(l),
                                        memory::desc({in[0], oc}, act, Tag::any));
    dnnl::inner_product_forward::primitive_desc pd(d, ReluAttr(l.relu), Engine());
    Ensure(pd.src_desc());
    Add<dnnl::inner_product_forward>(pd, Parameters(l, pd.weights_desc(), wd), "linear");
  }

  // PyTorch's output size (with its ceil-mode rule: the last window starts inside the input or the left padding);
  // oneDNN takes the right padding that makes its own arithmetic give the same size.
  void Pool(Layer& l) {
    const Dims in = dims();
    Dims dst{in[0], in[1], 0, 0}, pad_r{0, 0};
    for (int i = 0; i < 2; i++) {
      const int64_t span = in[i + 2] + 2 * l.padding[i] - l.kernel[i];
      int64_t o = (l.ceil ? (span + l.stride[i] - 1) / l.stride[i] : span / l.stride[i]) + 1;
      if (l.ceil && (o - 1) * l.stride[i] >= in[i + 2] + l.padding[i]) o--;
      dst[i + 2] = o;
      pad_r[i] = (o - 1) * l.stride[i] + l.kernel[i] - in[i + 2] - l.padding[i];
    }
    const auto alg =
        l.kind == Kind::kMaxPool ? dnnl::algorithm::pooling_max : dnnl::algorithm::pooling_avg_include_padding;
    dnnl::pooling_forward::desc d(dnnl::prop_kind::forward_inference, alg, cur.get_desc(),
                                  memory::desc(dst, act, Tag::any), l.stride, l.kernel, l.padding, pad_r);
    Add<dnnl::pooling_forward>(dnnl::pooling_forward::primitive_desc(d, Engine()), {}, "pool");
  }

  // Reads the current activations, in plain NCHW order, under other dimensions (no copy).
  void Reinterpret(const Dims& as) {
    // The input itself, whose buffer is only known per run: copy it.
    if (cur.get_data_handle() == nullptr) MoveTo(memory(cur.get_desc(), Engine()));
    const memory view(memory::desc(as, act, as.size() == 2 ? Tag::ab : Tag::abcd), Engine(), cur.get_data_handle());
    c.keep.push_back(cur);
    cur = view;
  }

  void Lrn(Layer& l) {
    const Dims in = dims();
    // Groups normalised on their own (the paper's towers): in NCHW order, (N, C, H, W) is (N·g, C/g, H, W).
    if (l.groups > 1) {
      Ensure(memory::desc(in, act, Tag::abcd));
      Reinterpret({in[0] * l.groups, in[1] / l.groups, in[2], in[3]});
      // oneDNN 2.6 has only its reference LRN for bf16 in plain NCHW (117 ms of a 32-image batch): channels-last.
      Ensure(memory::desc(dims(), act, Tag::acdb));
    }
    dnnl::lrn_forward::desc d(dnnl::prop_kind::forward_inference, dnnl::algorithm::lrn_across_channels, cur.get_desc(),
                              l.size, static_cast<float>(l.alpha), static_cast<float>(l.beta), static_cast<float>(l.k));
    Add<dnnl::lrn_forward>(dnnl::lrn_forward::primitive_desc(d, Engine()), {}, "lrn");
    if (l.groups > 1) {
      Ensure(memory::desc(cur.get_desc().dims(), act, Tag::abcd));
      Reinterpret(in);
    }
  }
};

std::unique_ptr<Chain> Build(Plan& p, const at::Tensor& x) {
  auto chain = std::make_unique<Chain>();
  dnnl::stream s(Engine());
  const Dims in(x.sizes().begin(), x.sizes().end());
  chain->input =
      memory(memory::desc(in, Dt::f32, Dims(x.strides().begin(), x.strides().end())), Engine(), DNNL_MEMORY_NONE);
  Builder b{*chain, s, chain->input, p.bf16 ? Dt::bf16 : Dt::f32};
  for (Layer& l : p.layers) {
    switch (l.kind) {
      case Kind::kConv: b.Conv(l); break;
      case Kind::kLinear: b.Linear(l); break;
      case Kind::kMaxPool:
      case Kind::kAvgPool: b.Pool(l); break;
      case Kind::kLrn: b.Lrn(l); break;
    }
  }
  const Dims out = b.dims();
  if (out.size() != 2) throw ArgError("the plan must end with a linear layer");
  chain->classes = out[1];
  chain->output = memory(memory::desc(out, Dt::f32, Tag::ab), Engine(), DNNL_MEMORY_NONE);
  b.MoveTo(chain->output);
  return chain;
}

Dims DimsField(const Napi::Object& o, const char* key) {
  Dims d;
  Napi::Value v = o.Get(key);
  if (!v.IsArray()) return d;
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) d.push_back(a.Get(i).As<Napi::Number>().Int64Value());
  return d;
}

Layer ParseLayer(const Napi::Object& o, const std::vector<at::Tensor>& tensors) {
  const std::string kind = o.Get("kind").As<Napi::String>().Utf8Value();
  Layer l;
  auto tensor = [&](const char* key) -> at::Tensor {
    Napi::Value v = o.Get(key);
    if (!v.IsNumber()) return at::Tensor();
    const at::Tensor& t = tensors.at(v.As<Napi::Number>().Int64Value());
    if (!t.device().is_cpu() || t.scalar_type() != at::kFloat) throw ArgError("plan weights must be CPU float32");
    return t.contiguous(t.dim() == 4 ? t.suggest_memory_format() : at::MemoryFormat::Contiguous);
  };
  auto num = [&](const char* key) { return o.Get(key).As<Napi::Number>().DoubleValue(); };
  if (kind == "conv") {
    l.kind = Kind::kConv;
    l.stride = DimsField(o, "stride");
    l.padding = DimsField(o, "padding");
    l.dilation = DimsField(o, "dilation");
    l.groups = static_cast<int64_t>(num("groups"));
  } else if (kind == "linear") {
    l.kind = Kind::kLinear;
  } else if (kind == "maxpool" || kind == "avgpool") {
    l.kind = kind == "maxpool" ? Kind::kMaxPool : Kind::kAvgPool;
    l.kernel = DimsField(o, "kernel");
    l.stride = DimsField(o, "stride");
    l.padding = DimsField(o, "padding");
    l.ceil = o.Get("ceil").ToBoolean();
  } else if (kind == "lrn") {
    l.kind = Kind::kLrn;
    l.size = static_cast<int64_t>(num("size"));
    l.alpha = num("alpha");
    l.beta = num("beta");
    l.k = num("k");
    l.groups = static_cast<int64_t>(num("groups"));
  } else {
    throw ArgError("unknown plan layer '" + kind + "'");
  }
  l.weight = tensor("weight");
  l.bias = tensor("bias");
  if (l.bias.defined()) l.bias = l.bias.clone();  // a snapshot, as the packed weights are
  if (l.weight.defined() && l.weight.dim() != 4 && l.weight.dim() != 2)
    throw ArgError("plan weights must be 2-D or 4-D");
  if (l.weight.defined() && l.weight.dim() == 2) l.weight = l.weight.contiguous();
  if (l.weight.defined()) l.wshape = Dims(l.weight.sizes().begin(), l.weight.sizes().end());
  if ((l.kind == Kind::kConv || l.kind == Kind::kLinear) && !l.weight.defined())
    throw ArgError("a " + kind + " layer needs weights");
  l.relu = o.Get("relu").ToBoolean();
  return l;
}

// The External's finalizer (garbage collection or worker teardown): must not throw.
void DeletePlan(Napi::Env, Plan* p) {
  try {
    delete p;
  } catch (...) {  // NOLINT(bugprone-empty-catch): a finalizer has nowhere to report to
  }
}

Plan& GetPlan(const Napi::CallbackInfo& info) {
  if (!info[0].IsExternal()) throw ArgError("argument 1 must be a oneDNN plan");
  return *info[0].As<Napi::External<Plan>>().Data();
}

// onednnPlan(layers[], tensors[], bf16) -> plan
Napi::Value NewPlan(const Napi::CallbackInfo& info) {
  auto plan = std::make_unique<Plan>();
  const std::vector<at::Tensor> tensors = TList(info, 1);
  Napi::Array specs = info[0].As<Napi::Array>();
  for (uint32_t i = 0; i < specs.Length(); i++)
    plan->layers.push_back(ParseLayer(specs.Get(i).As<Napi::Object>(), tensors));
  plan->bf16 = Bool(info, 2);
  return Napi::External<Plan>::New(info.Env(), plan.release(), DeletePlan);
}

Chain& ChainFor(Plan& p, const at::Tensor& x) {
  if (p.released) throw ArgError("the oneDNN plan was released");
  std::string key = ShapeString(x) + (x.is_contiguous() ? "c" : "l");
  for (auto it = p.chains.begin(); it != p.chains.end(); ++it) {
    if (it->first != key) continue;
    if (it != p.chains.begin()) {
      auto hit = std::move(*it);
      p.chains.erase(it);
      p.chains.push_front(std::move(hit));
    }
    return *p.chains.front().second;
  }
  p.chains.emplace_front(key, Build(p, x));
  if (p.chains.size() > Plan::kChains) p.chains.pop_back();
  return *p.chains.front().second;
}

// onednnRun(plan, x) -> logits: x is (N, C, H, W) float32 on the CPU, NCHW or channels-last.
Napi::Value Run(const Napi::CallbackInfo& info) {
  Plan& p = GetPlan(info);
  at::Tensor x = T(info, 1);
  if (!x.device().is_cpu() || x.dim() != 4) throw ArgError("a oneDNN plan takes a 4-D CPU tensor");
  x = x.to(at::kFloat);
  if (!x.is_contiguous() && !x.is_contiguous(at::MemoryFormat::ChannelsLast)) x = x.contiguous();
  std::lock_guard<std::mutex> lock(p.mu);
  Chain& c = ChainFor(p, x);
  at::Tensor out = at::empty({x.size(0), c.classes}, x.options());
  c.input.set_data_handle(x.data_ptr());
  c.output.set_data_handle(out.data_ptr());
  dnnl::stream s(Engine());
  for (Step& step : c.steps) step.prim.execute(s, step.args);
  s.wait();
  return Wrap(info.Env(), out);
}

// onednnImplementations(plan, x) -> the kernel each primitive runs for x's geometry ("conv:brgconv:avx512_core").
Napi::Value Implementations(const Napi::CallbackInfo& info) {
  Plan& p = GetPlan(info);
  std::lock_guard<std::mutex> lock(p.mu);
  const Chain& c = ChainFor(p, T(info, 1).contiguous(at::MemoryFormat::ChannelsLast));
  Napi::Array a = Napi::Array::New(info.Env(), c.impls.size());
  for (size_t i = 0; i < c.impls.size(); i++) a.Set(i, c.impls[i]);
  return a;
}

// onednnRelease(plan): frees the packed weights and primitives now rather than when the plan is collected.
Napi::Value Release(const Napi::CallbackInfo& info) {
  Plan& p = GetPlan(info);
  std::lock_guard<std::mutex> lock(p.mu);
  p.chains.clear();
  p.layers.clear();
  p.released = true;
  return info.Env().Undefined();
}

// ---- float32 fully connected layers in training ---------------------------------------------------------------
// libtorch 1.13 on Debian runs float32 matrix products through OpenBLAS, which is slow for AlexNet's shapes: a
// batch of 32 against 4096×9216 weights is a short, wide product (measured on Zen 5: ~90 GFLOP/s forward, and the
// weight gradient, gyᵀ·x with only 32 to sum over, slower still). oneDNN's GEMM (dnnl_sgemm, row-major) runs all
// three products of a linear layer faster. An autograd Function of libtorch's own: forward y = x·Wᵀ, backward
// gx = gy·W, gW = gyᵀ·x; the bias is an ordinary (autograd-tracked) addition.
struct SgemmLinear : public torch::autograd::Function<SgemmLinear> {
  static void Gemm(char ta, char tb, int64_t m, int64_t n, int64_t k, const at::Tensor& a, int64_t lda,
                   const at::Tensor& b, int64_t ldb, float beta, at::Tensor& c) {
    const dnnl_status_t st = dnnl_sgemm(ta, tb, m, n, k, 1.0f, a.data_ptr<float>(), lda, b.data_ptr<float>(), ldb, beta,
                                        c.data_ptr<float>(), c.size(1));
    if (st != dnnl_success) throw std::runtime_error("dnnl_sgemm failed with status " + std::to_string(st));
  }

  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w) {
    const at::Tensor xc = x.contiguous(), wc = w.contiguous();
    const int64_t n = xc.size(0), in = xc.size(1), out = wc.size(0);
    // yᵀ = W·xᵀ, then transposed (a small copy): row-major x·Wᵀ directly is 4× slower in oneDNN 2.6's GEMM.
    at::Tensor yt = at::empty({out, n}, xc.options());
    Gemm('N', 'T', out, n, in, wc, in, xc, in, 0.0f, yt);
    at::Tensor y = yt.t().contiguous();
    ctx->save_for_backward({xc, wc});
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w = saved[1];
    const at::Tensor gy = grads[0].contiguous();
    const int64_t n = x.size(0), in = x.size(1), out = w.size(0);
    at::Tensor gx, gw;
    if (ctx->needs_input_grad(0)) {
      gx = at::empty({n, in}, x.options());
      Gemm('N', 'N', n, in, out, gy, out, w, in, 0.0f, gx);
    }
    if (ctx->needs_input_grad(1)) {
      gw = at::empty({out, in}, w.options());
      Gemm('T', 'N', out, in, n, gy, out, x, in, 0.0f, gw);
    }
    return {gx, gw};
  }
};

// ---- float32 3×3 convolutions in training: Winograd ----------------------------------------------------------
// oneDNN has Winograd F(4×4, 3×3) kernels for float32 forward, backward-data and backward-weights on AVX-512
// (jit_wino_4x3); libtorch's CPU convolutions (ideep) always pick the direct algorithm. For AlexNet's 3×3 layers
// (conv3–conv5, 13×13 maps) the three passes take 0.70–0.80 of the direct kernels' time (measured on a 2-core
// Xeon with AVX-512, batch 32). The numbers differ from direct convolution by rounding only (Winograd's transforms
// add a few float32 ulps; the tests bound the difference against libtorch's and PyTorch's convolution).
// An autograd Function of libtorch's own; the activations are reordered between the ATen tensor's layout and the
// blocked one Winograd wants (small for 13×13 maps). Where oneDNN has no Winograd kernel (AVX2, other shapes)
// the primitive descriptor cannot be created and the call stays on at::conv2d.
struct WinoPrims {
  Dims pad;
  dnnl::convolution_forward::primitive_desc fwd;
  dnnl::convolution_backward_data::primitive_desc bwdData;
  dnnl::convolution_backward_weights::primitive_desc bwdWeights;
  dnnl::convolution_forward fwdP;
  dnnl::convolution_backward_data bwdDataP;
  dnnl::convolution_backward_weights bwdWeightsP;
};

// Scratch memory comes from the caller (an ATen buffer per execution, from our caching allocator): a primitive
// may then run on several threads at once, which oneDNN's own per-primitive scratchpad does not allow.
dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr a;
  a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return a;
}

// A buffer for oneDNN memory of layout `d`, owned by an ATen tensor (our caching allocator; can be saved).
at::Tensor BufferFor(const memory::desc& d) {
  return at::empty({static_cast<int64_t>(d.get_size())}, at::TensorOptions().dtype(at::kByte));
}

// Executes `prim` with a scratchpad of the size `pd` asks for.
template <typename PD>
void ExecuteWithScratch(const dnnl::primitive& prim, const PD& pd, dnnl::stream& s,
                        std::unordered_map<int, memory> args) {
  const memory::desc sd = pd.scratchpad_desc();
  at::Tensor buf;
  if (sd.get_size() > 0) {
    buf = BufferFor(sd);
    args[DNNL_ARG_SCRATCHPAD] = memory(sd, Engine(), buf.data_ptr());
  }
  prim.execute(s, args);
  s.wait();
}

std::mutex gWinoMu;
// Keyed by geometry; a null entry remembers that oneDNN has no Winograd kernel for it.
std::unordered_map<std::string, std::shared_ptr<WinoPrims>> gWino;

bool WinogradOn() {
  static const bool on = [] {
    const char* v = std::getenv("ALEXNET_CONV_WINOGRAD");
    return !(v && std::string(v) == "0");
  }();
  return on;
}

std::shared_ptr<WinoPrims> WinoFor(const Dims& src, const Dims& wei, const Dims& dst, const Dims& pad, bool bias) {
  std::string key;
  for (const Dims* d : {&src, &wei, &dst, &pad})
    for (int64_t v : *d) key += std::to_string(v) + ",";
  key += bias ? "b" : "n";
  std::lock_guard<std::mutex> lock(gWinoMu);
  auto it = gWino.find(key);
  if (it != gWino.end()) return it->second;
  std::shared_ptr<WinoPrims> p;
  try {
    const memory::desc s(src, Dt::f32, Tag::any), w(wei, Dt::f32, Tag::any), d(dst, Dt::f32, Tag::any),
        b = bias ? memory::desc({wei[0]}, Dt::f32, Tag::a) : memory::desc();
    const Dims one{1, 1};
    const auto alg = dnnl::algorithm::convolution_winograd;
    const dnnl::primitive_attr attr = UserScratchpad();
    dnnl::convolution_forward::primitive_desc f(
        dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, alg, s, w, b, d, one, pad, pad), attr,
        Engine());
    dnnl::convolution_backward_data::primitive_desc bd(
        dnnl::convolution_backward_data::desc(alg, s, w, d, one, pad, pad), attr, Engine(), f);
    dnnl::convolution_backward_weights::primitive_desc bw(
        dnnl::convolution_backward_weights::desc(alg, s, w, b, d, one, pad, pad), attr, Engine(), f);
    p = std::make_shared<WinoPrims>(WinoPrims{pad, f, bd, bw, dnnl::convolution_forward(f),
                                              dnnl::convolution_backward_data(bd),
                                              dnnl::convolution_backward_weights(bw)});
  } catch (const dnnl::error&) {
    p = nullptr;
  }
  if (gWino.size() >= 64) gWino.clear();
  gWino.emplace(key, p);
  return p;
}

Dims DimsOf(const at::Tensor& t) { return Dims(t.sizes().begin(), t.sizes().end()); }

// `t` (any strides) reordered into a buffer of layout `want` (no copy when it is already that layout).
std::pair<memory, at::Tensor> Into(const at::Tensor& t, const memory::desc& want, dnnl::stream& s) {
  memory user(ViewDesc(t, DimsOf(t)), Engine(), t.data_ptr());
  if (user.get_desc() == want) return {user, t};
  at::Tensor buf = BufferFor(want);
  memory m(want, Engine(), buf.data_ptr());
  dnnl::reorder(user, m).execute(s, user, m);
  return {m, buf};
}

// `m` reordered into a new float32 tensor of `sizes` in memory format `format`.
at::Tensor OutOf(const memory& m, const Dims& sizes, at::MemoryFormat format, dnnl::stream& s) {
  at::Tensor t = at::empty(at::IntArrayRef(sizes), at::TensorOptions().dtype(at::kFloat).memory_format(format));
  memory user(ViewDesc(t, sizes), Engine(), t.data_ptr());
  dnnl::reorder(const_cast<memory&>(m), user).execute(s, const_cast<memory&>(m), user);
  return t;
}

struct WinogradConv : public torch::autograd::Function<WinogradConv> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            const at::Tensor& b, const std::shared_ptr<WinoPrims>& p) {
    dnnl::stream s(Engine());
    const at::MemoryFormat format = x.suggest_memory_format();
    auto [src, srcBuf] = Into(x, p->fwd.src_desc(), s);
    auto [wei, weiBuf] = Into(w, p->fwd.weights_desc(), s);
    at::Tensor dstBuf = BufferFor(p->fwd.dst_desc());
    memory dst(p->fwd.dst_desc(), Engine(), dstBuf.data_ptr());
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}};
    if (b.defined()) args[DNNL_ARG_BIAS] = memory({{b.size(0)}, Dt::f32, Tag::a}, Engine(), b.data_ptr());
    ExecuteWithScratch(p->fwdP, p->fwd, s, args);
    at::Tensor y = OutOf(dst, p->fwd.dst_desc().dims(), format, s);
    s.wait();
    // Saved: the input as the forward read it (a byte buffer in the blocked layout, or x itself when x already had
    // that layout; backward-weights reads it) and the weights as given (backward-data reorders them).
    ctx->save_for_backward({srcBuf, w});
    ctx->saved_data["bias"] = b.defined();
    ctx->saved_data["format"] = static_cast<int64_t>(format);
    ctx->saved_data["xsizes"] = c10::List<int64_t>(x.sizes().vec());
    ctx->saved_data["pad"] = c10::List<int64_t>(std::vector<int64_t>(p->pad.begin(), p->pad.end()));
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &xs = saved[0], &w = saved[1];
    const auto format = static_cast<at::MemoryFormat>(ctx->saved_data["format"].toInt());
    auto dims = [&](const char* k) {
      const c10::List<int64_t> l = ctx->saved_data[k].toIntList();
      return Dims(l.begin(), l.end());
    };
    const Dims xsizes = dims("xsizes");
    const bool blocked = xs.scalar_type() == at::kByte;
    const at::Tensor gy = grads[0].contiguous(format);
    // From the cache (built again in the rare case it was cleared since the forward).
    const std::shared_ptr<WinoPrims> p =
        WinoFor(xsizes, DimsOf(w), DimsOf(gy), dims("pad"), ctx->saved_data["bias"].toBool());
    dnnl::stream s(Engine());
    at::Tensor gx, gw, gb;
    // gy in backward-data's layout, reused by backward-weights when it asks for the same one.
    std::pair<memory, at::Tensor> ddData;
    if (ctx->needs_input_grad(0)) {
      ddData = Into(gy, p->bwdData.diff_dst_desc(), s);
      const memory& dd = ddData.first;
      auto [wei, weiBuf] = Into(w, p->bwdData.weights_desc(), s);
      at::Tensor dsBuf = BufferFor(p->bwdData.diff_src_desc());
      memory ds(p->bwdData.diff_src_desc(), Engine(), dsBuf.data_ptr());
      ExecuteWithScratch(p->bwdDataP, p->bwdData, s,
                         {{DNNL_ARG_DIFF_DST, dd}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DIFF_SRC, ds}});
      gx = OutOf(ds, xsizes, format, s);
      s.wait();
    }
    if (ctx->needs_input_grad(1) || ctx->needs_input_grad(2)) {
      memory src;
      at::Tensor srcBuf;
      if (blocked && p->fwd.src_desc() == p->bwdWeights.src_desc()) {
        src = memory(p->bwdWeights.src_desc(), Engine(), xs.data_ptr());
      } else {
        at::Tensor x = blocked ? OutOf(memory(p->fwd.src_desc(), Engine(), xs.data_ptr()), xsizes, format, s) : xs;
        std::tie(src, srcBuf) = Into(x, p->bwdWeights.src_desc(), s);
      }
      const bool same = ddData.second.defined() && p->bwdWeights.diff_dst_desc() == p->bwdData.diff_dst_desc();
      auto [dd, ddBuf] = same ? ddData : Into(gy, p->bwdWeights.diff_dst_desc(), s);
      at::Tensor dwBuf = BufferFor(p->bwdWeights.diff_weights_desc());
      memory dw(p->bwdWeights.diff_weights_desc(), Engine(), dwBuf.data_ptr());
      std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, dd}, {DNNL_ARG_DIFF_WEIGHTS, dw}};
      if (ctx->saved_data["bias"].toBool()) {
        gb = at::empty({w.size(0)}, w.options());
        args[DNNL_ARG_DIFF_BIAS] = memory({{w.size(0)}, Dt::f32, Tag::a}, Engine(), gb.data_ptr());
      }
      ExecuteWithScratch(p->bwdWeightsP, p->bwdWeights, s, args);
      // The weight gradient in the weight's own layout (channels-last weights stay channels-last).
      gw = at::empty_like(w);
      memory user(ViewDesc(gw, DimsOf(gw)), Engine(), gw.data_ptr());
      dnnl::reorder(dw, user).execute(s, dw, user);
      s.wait();
    }
    return {gx, gw, gb, at::Tensor()};
  }
};

}  // namespace

// A float32 convolution needing gradients through Winograd where oneDNN has it (see WinogradConv); false when it
// does not apply (the caller runs at::conv2d).
bool TryWinogradConv(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& b,
                     const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
                     const std::vector<int64_t>& dilation, int64_t groups, at::Tensor* out) {
  if (!WinogradOn() || !at::GradMode::is_enabled() || at::autocast::is_cpu_enabled()) return false;
  if (!(x.requires_grad() || w.requires_grad() || (b && b->requires_grad()))) return false;
  if (!x.device().is_cpu() || x.scalar_type() != at::kFloat || w.scalar_type() != at::kFloat || x.dim() != 4 ||
      w.dim() != 4 || groups != 1 || w.size(2) != 3 || w.size(3) != 3 || x.size(1) != w.size(1) || x.size(0) == 0)
    return false;
  if (stride[0] != 1 || stride[1] != 1 || dilation[0] != 1 || dilation[1] != 1 || padding[0] != padding[1] ||
      padding[0] > 1)
    return false;
  if (b && (b->scalar_type() != at::kFloat || b->dim() != 1 || b->size(0) != w.size(0))) return false;
  // Only the two memory formats ATen's own convolution produces.
  const at::MemoryFormat f = x.suggest_memory_format();
  if (!x.is_contiguous(f) || !w.is_non_overlapping_and_dense()) return false;
  const int64_t oh = x.size(2) + 2 * padding[0] - 2, ow = x.size(3) + 2 * padding[1] - 2;
  if (oh <= 0 || ow <= 0) return false;
  std::shared_ptr<WinoPrims> p =
      WinoFor(DimsOf(x), DimsOf(w), {x.size(0), w.size(0), oh, ow}, {padding[0], padding[1]}, b.has_value());
  if (!p) return false;
  *out = WinogradConv::apply(x, w, b ? *b : at::Tensor(), p);
  return true;
}

namespace {

// ---- fully connected layers under bfloat16 autocast -------------------------------------------------------------
// Autocast's linear is addmm on bfloat16 copies of x, W and b; its weight gradient gyᵀ·x comes out of the product in
// bfloat16 and is then cast to float32 for the float32 weight (ToCopyBackward): for AlexNet's 58.6M classifier
// weights a bfloat16 write, a read and a float32 write every step, and the gradient rounded to 8 bits of mantissa
// on the way. Here the forward is the same addmm on the kept bfloat16 copies (native/optim.cc), bit for bit, and the
// weight gradient is the product of the same bfloat16 operands computed and written in float32 (accumulated in
// float32, as before, but never rounded to bfloat16); the bias gradient is summed in float32.
struct Bf16Linear : public torch::autograd::Function<Bf16Linear> {
  // x: the input as given; w, b: the float32 parameters (for their gradients); wc, bc: their bfloat16 copies.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            const at::Tensor& b, const at::Tensor& wc, const at::Tensor& bc) {
    const at::Tensor xb = x.to(at::kBFloat16).contiguous();
    at::Tensor y = bc.defined() ? at::addmm(bc, xb, wc.t()) : at::mm(xb, wc.t());
    ctx->save_for_backward({xb, wc});
    ctx->saved_data["xdtype"] = static_cast<int64_t>(x.scalar_type());
    ctx->saved_data["bias"] = b.defined();
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &xb = saved[0], &wc = saved[1];
    const at::Tensor gy = grads[0].to(at::kBFloat16).contiguous();
    at::Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) {
      gx = gy.mm(wc).to(static_cast<at::ScalarType>(ctx->saved_data["xdtype"].toInt()));
    }
    if (ctx->needs_input_grad(1)) {
      // Both operands to float32 (exact, and small: batch × features) and oneDNN's float32 GEMM, which writes
      // the out × in result faster than its bfloat16 matmul does here (measured: 10 against 17 ms for FC6's
      // 4096 × 9216 on a 2-core Xeon; the write of the result bounds both).
      const at::Tensor g32 = gy.to(at::kFloat), x32 = xb.to(at::kFloat);
      const int64_t n = xb.size(0), in = xb.size(1), out = wc.size(0);
      gw = at::empty({out, in}, g32.options());
      SgemmLinear::Gemm('T', 'N', out, in, n, g32, out, x32, in, 0.0f, gw);
    }
    if (ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2)) gb = gy.sum(0, false, at::kFloat);
    return {gx, gw, gb, at::Tensor(), at::Tensor()};
  }
};

// onednnLinear(x, w, b|null): linear() with oneDNN's GEMM for 2-D float32 CPU inputs outside autocast; anything
// else (other dtypes, devices, ranks, bfloat16 autocast) goes to libtorch's at::linear as before.
Napi::Value Linear(const Napi::CallbackInfo& info) {
  const at::Tensor& x = T(info, 0);
  const at::Tensor& w = T(info, 1);
  c10::optional<at::Tensor> b = OptT(info, 2);
  const bool plain = x.device().is_cpu() && x.dim() == 2 && x.scalar_type() == at::kFloat &&
                     w.scalar_type() == at::kFloat && w.dim() == 2 && x.size(1) == w.size(1) && x.size(0) > 0 &&
                     (!b || (b->scalar_type() == at::kFloat && b->dim() == 1 && b->size(0) == w.size(0))) &&
                     !at::autocast::is_cpu_enabled();
  if (!plain) {
    // Under bfloat16 autocast with gradients: Bf16Linear on the kept copies (native/optim.cc).
    const at::Tensor wc = at::GradMode::is_enabled() && w.requires_grad() && x.dim() == 2 && x.is_floating_point()
                              ? KeptBf16(w)
                              : at::Tensor();
    const at::Tensor bc = b ? KeptBf16(*b) : at::Tensor();
    if (wc.defined() && wc.dim() == 2 && x.size(1) == wc.size(1) && (!b || bc.defined()))
      return Wrap(info.Env(), Bf16Linear::apply(x, w, b ? *b : at::Tensor(), wc, bc));
    // Elsewhere under autocast: the kept copies instead of a cast per call.
    return Wrap(info.Env(), at::linear(x, AutocastWeight(w), AutocastWeight(b)));
  }
  at::Tensor y = SgemmLinear::apply(x, w);
  return Wrap(info.Env(), b ? y + *b : y);
}

}  // namespace
#else
bool TryWinogradConv(const at::Tensor&, const at::Tensor&, const c10::optional<at::Tensor>&,
                     const std::vector<int64_t>&, const std::vector<int64_t>&, const std::vector<int64_t>&, int64_t,
                     at::Tensor*) {
  return false;
}
#endif

void RegisterOnednn(Napi::Env env, Napi::Object exports) {
#if defined(ALEXNET_ONEDNN)
  exports.Set("onednnAvailable", Napi::Boolean::New(env, true));
  Export(env, exports, "onednnPlan", NewPlan);
  Export(env, exports, "onednnRun", Run);
  Export(env, exports, "onednnImplementations", Implementations);
  Export(env, exports, "onednnRelease", Release);
  Export(env, exports, "onednnLinear", Linear);
#else
  exports.Set("onednnAvailable", Napi::Boolean::New(env, false));
#endif
}

}  // namespace alexnet
