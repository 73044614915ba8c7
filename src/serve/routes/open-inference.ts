// The Open Inference Protocol (KServe v2, Triton): health, model metadata and readiness, and inference with the
// image as the raw body, answered as the softmax of all classes in one FP32 output.
import type { FastifyPluginAsync } from 'fastify';
import { topK } from '../../infer/predictor';
import { ADMIT } from '../admission';
import { modelNamed, ServeContext } from '../context';
import { classify } from '../uploads';
import { notReadyBody, readiness } from './health';

type Model = { Params: { model: string } };

export const openInferenceRoutes: FastifyPluginAsync<ServeContext> = async (app, c) => {
  app.get('/v2/health/live', async () => ({ live: true }));
  app.get('/v2/health/ready', async (_req, reply) => {
    const r = readiness(c);
    return r.ready ? { ready: true } : reply.code(503).send(notReadyBody(r));
  });
  app.get<Model>('/v2/models/:model', async (req) => {
    const card = modelNamed(c.host, req.params.model);
    return {
      name: card.model,
      versions: ['1'],
      platform: card.runtime,
      inputs: [{ name: 'image', datatype: 'BYTES', shape: [1] }],
      outputs: [{ name: 'probabilities', datatype: 'FP32', shape: [1, card.classes.length] }],
    };
  });
  app.get<Model>('/v2/models/:model/ready', async (req) => ({
    name: modelNamed(c.host, req.params.model).model,
    ready: true,
  }));
  app.post<Model>('/v2/models/:model/infer', { config: ADMIT }, async (req) => {
    const card = modelNamed(c.host, req.params.model);
    const r = await classify(req, c);
    const probs = topK(r.logits, card.classes, card.classes.length)[0].sort((a, b) => a.index - b.index);
    return {
      model_name: card.model,
      model_version: '1',
      outputs: [
        {
          name: 'probabilities',
          datatype: 'FP32',
          shape: [1, card.classes.length],
          data: probs.map((p) => p.probability),
        },
      ],
    };
  });
};
