// Weight initialisation in place, following torch.nn.init (fan computation, gains, bounds).
import { UserError } from '../errors';
import { fillNormal_, fillUniform_ } from '../tensor/random';
import { Tensor } from '../tensor/tensor';

export type FanMode = 'fan_in' | 'fan_out';
export type Nonlinearity = 'linear' | 'relu' | 'leaky_relu' | 'tanh' | 'sigmoid';

/** fan_in = size(1) × receptive field, fan_out = size(0) × receptive field (as torch.nn.init). */
export function fans(t: Tensor): { fanIn: number; fanOut: number } {
  const s = t.shape;
  if (s.length < 2)
    throw new UserError(`fan in and fan out need a tensor with at least 2 dimensions, got [${s.join(', ')}]`);
  const receptive = s.slice(2).reduce((a, b) => a * b, 1);
  return { fanIn: s[1] * receptive, fanOut: s[0] * receptive };
}

export function gain(nonlinearity: Nonlinearity, param?: number): number {
  switch (nonlinearity) {
    case 'linear':
    case 'sigmoid':
      return 1;
    case 'tanh':
      return 5 / 3;
    case 'relu':
      return Math.SQRT2;
    case 'leaky_relu': {
      const slope = param ?? 0.01;
      return Math.sqrt(2 / (1 + slope * slope));
    }
  }
}

export function normal_(t: Tensor, mean = 0, std = 1): Tensor {
  return fillNormal_(t, mean, std);
}
export function uniform_(t: Tensor, low = 0, high = 1): Tensor {
  return fillUniform_(t, low, high);
}
export function constant_(t: Tensor, value: number): Tensor {
  return t.fill_(value);
}
export function zeros_(t: Tensor): Tensor {
  return constant_(t, 0);
}
export function xavierUniform_(t: Tensor, g = 1): Tensor {
  const { fanIn, fanOut } = fans(t);
  const a = g * Math.sqrt(6 / (fanIn + fanOut));
  return uniform_(t, -a, a);
}
export function xavierNormal_(t: Tensor, g = 1): Tensor {
  const { fanIn, fanOut } = fans(t);
  return normal_(t, 0, g * Math.sqrt(2 / (fanIn + fanOut)));
}
export function kaimingUniform_(
  t: Tensor,
  o: { a?: number; mode?: FanMode; nonlinearity?: Nonlinearity } = {},
): Tensor {
  const f = fans(t);
  const fan = (o.mode ?? 'fan_in') === 'fan_in' ? f.fanIn : f.fanOut;
  const std = gain(o.nonlinearity ?? 'leaky_relu', o.a ?? 0) / Math.sqrt(fan);
  const bound = Math.sqrt(3) * std;
  return uniform_(t, -bound, bound);
}
export function kaimingNormal_(t: Tensor, o: { a?: number; mode?: FanMode; nonlinearity?: Nonlinearity } = {}): Tensor {
  const f = fans(t);
  const fan = (o.mode ?? 'fan_in') === 'fan_in' ? f.fanIn : f.fanOut;
  return normal_(t, 0, gain(o.nonlinearity ?? 'leaky_relu', o.a ?? 0) / Math.sqrt(fan));
}
/** PyTorch's default for Conv2d and Linear: weight kaiming_uniform(a=√5) = U(±1/√fan_in), bias U(±1/√fan_in). */
export function pytorchDefault_(weight: Tensor, bias?: Tensor): void {
  kaimingUniform_(weight, { a: Math.sqrt(5) });
  if (bias) {
    const bound = 1 / Math.sqrt(fans(weight).fanIn);
    uniform_(bias, -bound, bound);
  }
}
