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
 * adaptive average pooling becomes identity or AveragePool for the network's input size. Given the network's spec
 * (a model's `networkSpec()`, or the model itself).
 */
export function exportOnnx(
  source: NetworkSpec | { networkSpec(): NetworkSpec },
  metadata: Record<string, string> = {},
): OnnxExport {
  const net = 'networkSpec' in source ? source.networkSpec() : source;
  const graph = new Pb();
  const nodes: { op: string; inputs: string[]; output: string; name: string; attrs: Attr[] }[] = [];
  const inits: Pb[] = [];
  let current = 'input';
  let shape: number[] = [...net.input];
  const param = (key: string): string => {
    const t = net.weights.get(key);
    if (!t) throw new UserError(`${net.name} has no '${key}' to export`);
    inits.push(initializer(key, t));
    return key;
  };
  for (const layer of net.layers) {
    const { name, spec } = layer;
    const n = layerNode(layer, current, param);
    shape = layer.output;
    if (!n) continue;
    if (spec.kind === 'lrn' && spec.groups > 1) {
      const chain = groupedLrn(name, spec.groups, n, current, shape, inits);
      nodes.push(...chain);
      current = chain[chain.length - 1].output;
      continue;
    }
    current = `${name}.out`;
    nodes.push({ ...n, output: current, name });
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

/**
 * An LRN over channel groups (alexnet-2012's per-tower LRN) as ONNX nodes — ONNX's LRN has no groups: Reshape
 * (N, C, H, W) → (N·G, C/G, H, W), the LRN, Reshape back, so that each group's window stays inside it.
 */
function groupedLrn(name: string, groups: number, lrn: NodeSpec, input: string, shape: number[], inits: Pb[]) {
  const [c, h, w] = shape;
  const grouped = `${name}.grouped_shape`;
  const whole = `${name}.shape`;
  inits.push(int64Initializer(grouped, [-1, c / groups, h, w]), int64Initializer(whole, [-1, c, h, w]));
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
const nodeSpec = (op: string, inputs: string[], attrs: Attr[] = []): NodeSpec => ({ op, inputs, attrs });

/** A layer as an ONNX node reading `input` (its tensors named by `param`, from their keys); undefined: identity. */
// One case per kind of layer: the table from our layers to ONNX operators, read as a whole.
// eslint-disable-next-line max-lines-per-function
function layerNode(layer: LayerEntry, input: string, param: (key: string) => string): NodeSpec | undefined {
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
    case 'lrn':
      // ONNX: window floor((size-1)/2) before and ceil((size-1)/2) after, Y = X / (bias + α/size · Σ)^β.
      if (spec.size % 2 === 0)
        throw new UserError(
          `${name}: LRN with an even window (${spec.size}) cannot be expressed in ONNX (its window is placed differently)`,
        );
      return nodeSpec(
        'LRN',
        [input],
        [
          { name: 'size', i: spec.size },
          { name: 'alpha', f: spec.alphaPerSize ? spec.alpha : spec.alpha * spec.size },
          { name: 'beta', f: spec.beta },
          { name: 'bias', f: spec.k },
        ],
      );
    case 'batchNorm2d':
      return nodeSpec(
        'BatchNormalization',
        [input, ...['weight', 'bias', 'running_mean', 'running_var'].map((k) => param(`${name}.${k}`))],
        [{ name: 'epsilon', f: spec.eps }],
      );
    case 'adaptiveAvgPool2d': {
      const [, h, w] = layer.input;
      const [oh, ow] = spec.size;
      if (h === oh && w === ow) return undefined; // identity at this input size
      if (h % oh || w % ow)
        throw new UserError(
          `${name}: adaptive pooling from ${h}×${w} to ${oh}×${ow} has uneven windows and no ONNX equivalent; export at an input size whose feature map is a multiple of ${oh}×${ow}`,
        );
      return nodeSpec(
        'AveragePool',
        [input],
        [
          { name: 'kernel_shape', ints: [h / oh, w / ow] },
          { name: 'strides', ints: [h / oh, w / ow] },
        ],
      );
    }
    case 'flatten':
      return nodeSpec('Flatten', [input], [{ name: 'axis', i: 1 }]);
    case 'dropout':
      return undefined; // inference: identity
    case 'linear':
      return nodeSpec('Gemm', [input, ...weightAndBias(spec.bias)], [{ name: 'transB', i: 1 }]);
    case 'tanh':
    case 'sequential':
    case 'container':
      throw new UserError(`${name}: ${layer.description} has no ONNX mapping`);
    default: {
      const unknown: never = spec;
      throw new UserError(`${name}: layer kind '${(unknown as { kind: string }).kind}' has no ONNX mapping`);
    }
  }
}
