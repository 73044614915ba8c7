// TorchServe's inference API as its documentation uses it: POST or PUT /predictions/MODEL[/VERSION] (the top 5 as
// {label: probability}) with the image as the body whatever its Content-Type (`curl -T`, `--data-binary`: the
// bytes' magic decides, as the allow-list does) or as a multipart file under any field name (`-F data=@…`); and
// GET /ping.
import type { FastifyPluginAsync } from 'fastify';
import { topK } from '../../infer/predictor';
import { ADMIT } from '../admission';
import { modelNamed, ServeContext } from '../context';
import { ServeError } from '../errors';
import { classify, parseAnyBody } from '../uploads';
import { readiness } from './health';

/** The versions of the one model served (TorchServe's default version is "1.0"). */
const VERSIONS = ['1', '1.0'];

export const torchServeRoutes: FastifyPluginAsync<ServeContext> = async (app, c) => {
  // In this plugin's scope only: every body is bytes (text/plain, form-urlencoded, none at all), judged by its magic.
  parseAnyBody(app, c.limits.maxUploadMb);
  const check = (model: string, version?: string) => {
    const card = modelNamed(c.host, model);
    if (version !== undefined && !VERSIONS.includes(version))
      throw new ServeError('unknown_model', `this server serves version 1.0 of '${card.model}', not '${version}'`);
  };
  app.route<{ Params: { model: string; version?: string } }>({
    method: ['POST', 'PUT'],
    url: '/predictions/:model',
    config: ADMIT,
    handler: async (req) => {
      check(req.params.model);
      return top5(await classify(req, c, { anyField: true, anyType: true }));
    },
  });
  app.route<{ Params: { model: string; version: string } }>({
    method: ['POST', 'PUT'],
    url: '/predictions/:model/:version',
    config: ADMIT,
    handler: async (req) => {
      check(req.params.model, req.params.version);
      return top5(await classify(req, c, { anyField: true, anyType: true }));
    },
  });
  app.get('/ping', async (_req, reply) =>
    readiness(c).ready
      ? { status: 'Healthy' }
      : reply.code(503).send({ status: 'Unhealthy', error: 'not ready', code: 'not_ready' }),
  );
};

const top5 = (r: Awaited<ReturnType<typeof classify>>) =>
  Object.fromEntries(topK(r.logits, r.card.classes, 5)[0].map((t) => [t.class, t.probability]));
