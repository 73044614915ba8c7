// This server's own API: POST /v1/predict (the top k), GET /v1/models (the model card, preprocessing, batching and
// limits) and POST /v1/reload (the weights loaded anew and swapped atomically; also on SIGHUP).
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { topK } from '../../infer/predictor';
import { ADMIT } from '../admission';
import { Limits, ServeContext, slotOf } from '../context';
import { AUTO_RULE } from '../engine';
import { ServeError } from '../errors';
import { ALLOWED_FORMATS } from '../images';
import { classBounds, kParam } from '../params';
import { classify } from '../uploads';
import { ModelCard } from '../types';

export const v1Routes: FastifyPluginAsync<ServeContext> = async (app, c) => {
  app.post('/v1/predict', { config: ADMIT }, async (req) => {
    const k = kOf(req, slotOf(c.host).engine.card.classes.length);
    const r = await classify(req, c);
    const top = topK(r.logits, r.card.classes, k)[0].map((t) => ({
      index: t.index,
      label: t.class,
      prob: t.probability,
    }));
    return { model: r.card.model, top, timing_ms: r.timing };
  });
  app.get('/v1/models', async () => describeModel(slotOf(c.host).engine.card, c.limits));
  app.post('/v1/reload', async () => {
    slotOf(c.host);
    const r = await c.host.reload();
    if (!r.ok) throw new ServeError('reload_failed', `reload failed, the old model is still served: ${r.error}`);
    const card = c.host.slot!.engine.card;
    return {
      reloaded: true,
      model: card.model,
      weights: card.weights,
      runtime: card.runtime,
      precision: card.precision,
      ms: r.ms,
    };
  });
};

/** `?k=` (default 5, or every class of a model with fewer), by the one rule for k (params.ts). */
function kOf(req: FastifyRequest, classes: number): number {
  const raw = (req.query as { k?: unknown }).k;
  return raw === undefined ? Math.min(5, classes) : kParam(raw, classBounds(classes));
}

function describeModel(card: ModelCard, o: Limits) {
  const g = card.geometry;
  return {
    model: card.model,
    weights: card.weights,
    classes: card.classes,
    input: { channels: g.channels, height: g.height, width: g.width },
    preprocessing: {
      resize: g.shortSide
        ? `short side to ${g.shortSide}, centre crop ${g.height}×${g.width}`
        : `to ${g.height}×${g.width} (as the data set's images)`,
      color: g.channels === 1 ? 'grayscale' : 'sRGB',
      alpha: 'flattened on white',
      exif_orientation: 'applied',
      mean: card.preprocessing.mean,
      std: card.preprocessing.std,
    },
    runtime: card.runtime,
    precision: card.precision,
    selection: card.selection,
    auto_rule: AUTO_RULE,
    batching: { max_batch: o.maxBatch, max_delay_ms: o.maxDelayMs },
    limits: {
      max_upload_mb: o.maxUploadMb,
      max_pixels: o.maxPixels,
      max_inflight: o.maxInflight,
      request_timeout_ms: o.requestTimeoutMs,
      formats: [...ALLOWED_FORMATS],
    },
  };
}
