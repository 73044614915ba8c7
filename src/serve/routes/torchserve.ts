// TorchServe's inference API: POST /predictions/MODEL (the top 5 as {label: probability}) and GET /ping.
import type { FastifyPluginAsync } from 'fastify';
import { topK } from '../../infer/predictor';
import { ADMIT } from '../admission';
import { modelNamed, ServeContext } from '../context';
import { classify } from '../uploads';
import { readiness } from './health';

export const torchServeRoutes: FastifyPluginAsync<ServeContext> = async (app, c) => {
  app.post<{ Params: { model: string } }>('/predictions/:model', { config: ADMIT }, async (req) => {
    modelNamed(c.host, req.params.model);
    const r = await classify(req, c);
    return Object.fromEntries(topK(r.logits, r.card.classes, 5)[0].map((t) => [t.class, t.probability]));
  });
  app.get('/ping', async (_req, reply) =>
    readiness(c).ready
      ? { status: 'Healthy' }
      : reply.code(503).send({ status: 'Unhealthy', error: 'not ready', code: 'not_ready' }),
  );
};
