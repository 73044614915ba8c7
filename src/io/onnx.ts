// ONNX export of the AlexNet family, written with our own protobuf encoder from the ONNX schema (onnx.proto):
// opset 13, IR version 8, a dynamic batch dimension, weights as raw little-endian initialisers, and the model
// record (classes, preprocessing) in metadata_props so that ONNX-only inference needs nothing else.
import { UserError } from '../errors';
import { tensorBytes } from '../tensor/bytes';
import type { LayerEntry, NetworkSpec } from '../nn/spec';
import { Tensor } from '../tensor/tensor';

export const ONNX_OPSET = 13;
export const ONNX_IR_VERSION = 8;

// ---- a minimal protobuf writer -----------------------------------------------------------------------------
class Pb {
  private chunks: Buffer[] = [];

  private varint(v: number | bigint): void {
    let x = BigInt.asUintN(64, BigInt(v));
    const bytes: number[] = [];
    do {
      let b = Number(x & 0x7fn);
      x >>= 7n;
      if (x) b |= 0x80;
      bytes.push(b);
    } while (x);
    this.chunks.push(Buffer.from(bytes));
  }
  private key(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }
  int(field: number, v: number | bigint): this {
    this.key(field, 0);
    this.varint(v);
    return this;
  }
  float(field: number, v: number): this {
    this.key(field, 5);
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.chunks.push(b);
    return this;
  }
  bytes(field: number, v: Buffer | string): this {
    const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
    this.key(field, 2);
    this.varint(b.length);
    this.chunks.push(b);
    return this;
  }
  msg(field: number, m: Pb): this {
    return this.bytes(field, m.finish());
  }
  finish(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

// ONNX enums
const FLOAT = 1;
const ATTR = { FLOAT: 1, INT: 2, INTS: 7 } as const;

type Attr = { name: string; f?: number; i?: number; ints?: number[] };

function attribute(a: Attr): Pb {
  const p = new Pb().bytes(1, a.name);
  if (a.f !== undefined) p.float(2, a.f).int(20, ATTR.FLOAT);
  else if (a.i !== undefined) p.int(3, a.i).int(20, ATTR.INT);
  else {
    for (const v of a.ints!) p.int(8, v);
    p.int(20, ATTR.INTS);
  }
  return p;
}

function node(op: string, inputs: string[], outputs: string[], name: string, attrs: Attr[] = []): Pb {
  const p = new Pb();
  for (const i of inputs) p.bytes(1, i);
  for (const o of outputs) p.bytes(2, o);
  p.bytes(3, name).bytes(4, op);
  for (const a of attrs) p.msg(5, attribute(a));
  return p;
}

function initializer(name: string, t: Tensor): Pb {
  const p = new Pb();
  for (const d of t.shape) p.int(1, d);
  p.int(2, FLOAT).bytes(8, name);
  p.bytes(9, tensorBytes(t.float()));
  return p;
}

function valueInfo(name: string, dims: (number | string)[]): Pb {
  const shape = new Pb();
  for (const d of dims) shape.msg(1, typeof d === 'number' ? new Pb().int(1, d) : new Pb().bytes(2, d));
  const tensorType = new Pb().int(1, FLOAT).msg(2, shape);
  return new Pb().bytes(1, name).msg(2, new Pb().msg(1, tensorType));
}

// ---- export ------------------------------------------------------------------------------------------------
export interface OnnxExport {
  bytes: Buffer;
  nodes: number;
  opTypes: string[];
}

/**
 * The network (in eval mode) as an ONNX graph with input "input" (batch, C, H, W) and output "logits"
 * (batch, classes). Dropout disappears; LRN is mapped to ONNX's (which divides α by size) with the right α;
 * adaptive average pooling becomes what it computes at the network's input size (identity, AveragePool, a
 * broadcast, or constant gathers and averaging matrices: adaptiveAvgPool). Given the network's spec (a model's
 * `networkSpec()`, or the model itself).
 */
export function exportOnnx(
  source: NetworkSpec | { networkSpec(): NetworkSpec },
  metadata: Record<string, string> = {},
): OnnxExport {
  const net = 'networkSpec' in source ? source.networkSpec() : source;
  const graph = new Pb();
  const nodes: GraphNode[] = [];
  const inits: Pb[] = [];
  let current = 'input';
  let shape: number[] = [...net.input];
  const param = (key: string): string => {
    const t = net.weights.get(key);
    if (!t) throw new UserError(`${net.name} has no '${key}' to export`);
    inits.push(initializer(key, t));
    return key;
  };
  const constant = (init: Pb) => void inits.push(init);
  for (const layer of net.layers) {
    const { name } = layer;
    const n = layerNode(layer, current, param, constant);
    shape = layer.output;
    if (!n) continue;
    const chain = Array.isArray(n) ? n : [{ ...n, output: `${name}.out`, name }];
    nodes.push(...chain);
    current = chain[chain.length - 1].output;
  }
  if (!nodes.length) throw new UserError(`${net.name} has no layers to export`);
  nodes[nodes.length - 1].output = 'logits';
  for (const n of nodes) graph.msg(1, node(n.op, n.inputs, [n.output], n.name, n.attrs));
  graph.bytes(2, net.name);
  for (const i of inits) graph.msg(5, i);
  graph.msg(11, valueInfo('input', ['batch', ...net.input]));
  graph.msg(12, valueInfo('logits', ['batch', ...shape]));

  const m = new Pb().int(1, ONNX_IR_VERSION).bytes(2, 'alexnet-ts').bytes(3, require('../../../package.json').version);
  m.msg(7, graph);
  m.msg(8, new Pb().bytes(1, '').int(2, ONNX_OPSET));
  for (const [k, v] of Object.entries(metadata)) m.msg(14, new Pb().bytes(1, k).bytes(2, v));
  return { bytes: m.finish(), nodes: nodes.length, opTypes: nodes.map((n) => n.op) };
}

type NodeSpec = { op: string; inputs: string[]; attrs: Attr[] };
/** A node with its output's name: a layer that becomes several nodes gives them all, the last writing `${name}.out`. */
type GraphNode = NodeSpec & { output: string; name: string };
/** Adds a constant (an initialiser) to the graph. */
type Constant = (init: Pb) => void;

/**
 * An LRN over channel groups (alexnet-2012's per-tower LRN) as ONNX nodes — ONNX's LRN has no groups: Reshape
 * (N, C, H, W) → (N·G, C/G, H, W), the LRN, Reshape back, so that each group's window stays inside it.
 */
function groupedLrn(
  name: string,
  groups: number,
  lrn: NodeSpec,
  input: string,
  shape: number[],
  constant: Constant,
): GraphNode[] {
  const [c, h, w] = shape;
  const grouped = `${name}.grouped_shape`;
  const whole = `${name}.shape`;
  constant(int64Initializer(grouped, [-1, c / groups, h, w]));
  constant(int64Initializer(whole, [-1, c, h, w]));
  return [
    { ...nodeSpec('Reshape', [input, grouped]), output: `${name}.grouped`, name: `${name}.group` },
    { ...lrn, inputs: [`${name}.grouped`], output: `${name}.normalised`, name },
    { ...nodeSpec('Reshape', [`${name}.normalised`, whole]), output: `${name}.out`, name: `${name}.ungroup` },
  ];
}

/** A constant int64 tensor (ONNX data_type 7), e.g. a Reshape's target shape. */
function int64Initializer(name: string, values: number[]): Pb {
  const raw = Buffer.from(BigInt64Array.from(values, (v) => BigInt(v)).buffer);
  return new Pb().int(1, values.length).int(2, 7).bytes(8, name).bytes(9, raw);
}
/** A constant float tensor of the given dims (row-major). */
function floatInitializer(name: string, dims: number[], values: Float32Array): Pb {
  const p = new Pb();
  for (const d of dims) p.int(1, d);
  return p
    .int(2, FLOAT)
    .bytes(8, name)
    .bytes(9, Buffer.from(values.buffer, values.byteOffset, values.byteLength));
}
const nodeSpec = (op: string, inputs: string[], attrs: Attr[] = []): NodeSpec => ({ op, inputs, attrs });

/**
 * PyTorch's adaptive average pooling windows along an axis of n cells pooled to m: output i averages the input
 * cells [⌊i·n/m⌋, ⌈(i+1)·n/m⌉) — of varying size and overlapping when m does not divide n, one cell each when n
 * divides m (a broadcast).
 */
function adaptiveWindows(n: number, m: number): [number, number][] {
  return Array.from({ length: m }, (_, i): [number, number] => [Math.floor((i * n) / m), Math.ceil(((i + 1) * n) / m)]);
}

/**
 * Adaptive average pooling from the layer's input map (h×w) to (oh×ow), exactly, at any input size: nothing when
 * the sizes agree; AveragePool when the windows are even (h, w multiples of oh, ow); Expand when the map is 1×1 (a
 * broadcast); otherwise one axis at a time (H, then W): a Gather with constant indices where every window is one
 * cell, and a MatMul with the constant averaging matrix (row i holds 1/size over window i) where they are not.
 */
function adaptiveAvgPool(
  name: string,
  input: string,
  shape: number[],
  [oh, ow]: [number, number],
  constant: Constant,
): NodeSpec | GraphNode[] | undefined {
  const [, h, w] = shape;
  if (h === oh && w === ow) return undefined;
  if (h % oh === 0 && w % ow === 0) {
    const kernel = [h / oh, w / ow];
    return nodeSpec(
      'AveragePool',
      [input],
      [
        { name: 'kernel_shape', ints: kernel },
        { name: 'strides', ints: kernel },
      ],
    );
  }
  if (h === 1 && w === 1) {
    constant(int64Initializer(`${name}.shape`, [1, 1, oh, ow]));
    return nodeSpec('Expand', [input, `${name}.shape`]);
  }
  const steps: GraphNode[] = [];
  let x = input;
  for (const [axis, n, m, label] of [
    [2, h, oh, 'rows'],
    [3, w, ow, 'cols'],
  ] as const) {
    if (n === m) continue;
    const windows = adaptiveWindows(n, m);
    const out = `${name}.${label}`;
    if (windows.every(([a, b]) => b - a === 1)) {
      const index = windows.map(([a]) => a);
      constant(int64Initializer(`${out}.index`, index));
      steps.push({ ...nodeSpec('Gather', [x, `${out}.index`], [{ name: 'axis', i: axis }]), output: out, name: out });
    } else {
      // rows: (m, n) · X, over H; cols: X · (n, m), over W
      const weights = new Float32Array(m * n);
      windows.forEach(([a, b], i) => {
        for (let j = a; j < b; j++) weights[axis === 2 ? i * n + j : j * m + i] = 1 / (b - a);
      });
      constant(floatInitializer(`${out}.weights`, axis === 2 ? [m, n] : [n, m], weights));
      const inputs = axis === 2 ? [`${out}.weights`, x] : [x, `${out}.weights`];
      steps.push({ ...nodeSpec('MatMul', inputs), output: out, name: out });
    }
    x = out;
  }
  steps[steps.length - 1].output = `${name}.out`;
  return steps;
}

/**
 * A layer as an ONNX node reading `input` (its tensors named by `param`, from their keys, constants added with
 * `constant`), or as several nodes (named, the last writing `${name}.out`); undefined: identity. One case per kind
 * of layer: the table from our layers to ONNX operators, read as a whole.
 */
function layerNode(
  layer: LayerEntry,
  input: string,
  param: (key: string) => string,
  constant: Constant,
): NodeSpec | GraphNode[] | undefined {
  const { name, spec } = layer;
  const weightAndBias = (bias: boolean) => [param(`${name}.weight`), ...(bias ? [param(`${name}.bias`)] : [])];
  switch (spec.kind) {
    case 'conv2d':
      return nodeSpec(
        'Conv',
        [input, ...weightAndBias(spec.bias)],
        [
          { name: 'kernel_shape', ints: [...spec.kernel] },
          { name: 'strides', ints: [...spec.stride] },
          { name: 'pads', ints: [spec.padding[0], spec.padding[1], spec.padding[0], spec.padding[1]] },
          { name: 'dilations', ints: [...spec.dilation] },
          { name: 'group', i: spec.groups },
        ],
      );
    case 'relu':
      return nodeSpec('Relu', [input]);
    case 'maxPool2d':
      return nodeSpec(
        'MaxPool',
        [input],
        [
          { name: 'kernel_shape', ints: [...spec.kernel] },
          { name: 'strides', ints: [...spec.stride] },
          { name: 'pads', ints: [spec.padding[0], spec.padding[1], spec.padding[0], spec.padding[1]] },
          { name: 'ceil_mode', i: spec.ceilMode ? 1 : 0 },
        ],
      );
    case 'lrn': {
      // ONNX: window floor((size-1)/2) before and ceil((size-1)/2) after, Y = X / (bias + α/size · Σ)^β.
      if (spec.size % 2 === 0)
        throw new UserError(
          `${name}: LRN with an even window (${spec.size}) cannot be expressed in ONNX (its window is placed differently)`,
        );
      const lrn = nodeSpec(
        'LRN',
        [input],
        [
          { name: 'size', i: spec.size },
          { name: 'alpha', f: spec.alphaPerSize ? spec.alpha : spec.alpha * spec.size },
          { name: 'beta', f: spec.beta },
          { name: 'bias', f: spec.k },
        ],
      );
      return spec.groups > 1 ? groupedLrn(name, spec.groups, lrn, input, layer.output, constant) : lrn;
    }
    case 'batchNorm2d':
      return nodeSpec(
        'BatchNormalization',
        [input, ...['weight', 'bias', 'running_mean', 'running_var'].map((k) => param(`${name}.${k}`))],
        [{ name: 'epsilon', f: spec.eps }],
      );
    case 'adaptiveAvgPool2d':
      return adaptiveAvgPool(name, input, layer.input, spec.size, constant);
    case 'flatten':
      return nodeSpec('Flatten', [input], [{ name: 'axis', i: 1 }]);
    case 'dropout':
      return undefined; // inference: identity
    case 'linear':
      return nodeSpec('Gemm', [input, ...weightAndBias(spec.bias)], [{ name: 'transB', i: 1 }]);
    case 'tanh':
      return nodeSpec('Tanh', [input]);
    case 'sequential':
    case 'container':
      throw new UserError(`${name}: ${layer.description} has no ONNX mapping`);
    default: {
      const unknown: never = spec;
      throw new UserError(`${name}: layer kind '${(unknown as { kind: string }).kind}' has no ONNX mapping`);
    }
  }
}
