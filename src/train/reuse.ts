// Reusing a trained network, as people do with torchvision: start from its weights (ours, or a torch.save state
// dict such as torchvision's alexnet-owt-7be5be79.pth) with a new head sized for this data set, and optionally
// freeze the layers up to a point so that only the rest learns.
import { UserError } from '../errors';
import { AlexNet, AlexNetOptions } from '../models/alexnet';
import { getModel, listModels } from '../models/registry';
import { Module, withoutWeights } from '../nn/module';
import { readSafetensorsMetadata } from '../io/safetensors';
import { loadModel, weightsKind } from '../persist/load';
import { CHECKPOINT_FORMAT, readRecord, WEIGHTS_FORMAT } from '../persist/record';
import { sameShape } from '../tensor/dtype';
import { Tensor } from '../tensor/tensor';

export interface InitReport {
  copied: string[];
  /** Tensors left as initialised, with why: "classifier.6.weight (1000×4096 there, 10×4096 here)". */
  fresh: string[];
}

/** The variant a weights file holds (for --init-from without --model). */
export function variantOf(file: string): string {
  // Our files name it in their header: the weights (240 MB for most variants) are read once, by initFrom.
  const m = weightsKind(file, '--init-from') === 'safetensors' ? readSafetensorsMetadata(file) : undefined;
  if (m?.format === CHECKPOINT_FORMAT || m?.format === WEIGHTS_FORMAT) return readRecord(m, file).model;
  // A plain state dict: the variant is recognised from its keys and shapes, which takes loading it.
  const { model, record } = loadModel(file, { what: '--init-from' });
  model.dispose();
  return record.model;
}

/**
 * Copies into `model` every tensor of `file`'s model with the same name and shape; the others (a head for another
 * number of classes, a first layer for other input channels) keep their fresh initialisation.
 */
export function initFrom(model: AlexNet, file: string, variant: string): InitReport {
  const source = loadModel(file, { what: '--init-from' });
  try {
    if (source.record.model !== variant) {
      throw new UserError(
        `--init-from ${file} holds ${source.record.model}, but the run trains ${variant} (give --model ${source.record.model}, or leave --model out)`,
      );
    }
    const theirs = source.model.stateDict();
    const report: InitReport = { copied: [], fresh: [] };
    const matching = new Map<string, Tensor>();
    for (const [k, t] of model.stateDict()) {
      const s = theirs.get(k);
      if (s && sameShape(s.shape, t.shape)) {
        matching.set(k, s);
        report.copied.push(k);
      } else {
        report.fresh.push(s ? `${k} (${s.shape.join('×')} there, ${t.shape.join('×')} here)` : `${k} (not in ${file})`);
      }
    }
    model.loadStateDict(matching, { strict: false });
    return report;
  } finally {
    source.model.dispose();
  }
}

/**
 * Freezes `upTo`: "features" (every convolutional layer) or a layer's name (e.g. classifier.4: it and every layer
 * before it). Frozen parameters get no gradient; the layers returned must stay in evaluation mode while training
 * (batch-norm statistics and dropout frozen too), so that they come out of training bit-identical.
 */
export function freeze(model: AlexNet, upTo: string): Module[] {
  const layers = model.layers();
  const chosen = new Set(
    frozenLayers(
      layers.map(([n]) => n),
      upTo,
      model.name,
    ),
  );
  const frozen = layers.filter(([n]) => chosen.has(n)).map(([, layer]) => layer);
  for (const layer of frozen) for (const p of layer.parameters()) p.requiresGrad_(false);
  return frozen;
}

/** The names of the layers `upTo` freezes among `names` (a model's layers in order); a UserError if none or all. */
function frozenLayers(names: string[], upTo: string, model: string): string[] {
  let chosen: string[];
  if (upTo === 'features') chosen = names.filter((n) => n.startsWith('features.'));
  else {
    const i = names.indexOf(upTo);
    if (i < 0)
      throw new UserError(`--freeze must be features or a layer of ${model}: ${names.join(', ')}; got '${upTo}'`);
    chosen = names.slice(0, i + 1);
  }
  if (chosen.length === names.length)
    throw new UserError(`--freeze ${upTo} would freeze every layer: nothing to train`);
  return chosen;
}

const layerNames = (model: string, options: AlexNetOptions = {}): string[] =>
  withoutWeights(() => getModel(model, options))
    .layers()
    .map(([n]) => n);

/**
 * Checks --freeze before any weights are read: against the layers of `model` (built without weights), or, while
 * the model is not known yet (it will be the --init-from file's), against the layer names of every variant.
 */
export function checkFreeze(upTo: string, model?: string, options: AlexNetOptions = {}): void {
  if (model !== undefined) {
    frozenLayers(layerNames(model, options), upTo, model);
    return;
  }
  if (upTo === 'features' || listModels().some((m) => layerNames(m.name).includes(upTo))) return;
  throw new UserError(
    `--freeze must be features or a layer name (e.g. classifier.4; alexnet summary --model NAME lists a model's), got '${upTo}'`,
  );
}
