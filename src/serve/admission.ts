// Admission: requests to the routes that decode and infer (those with `config: { admit: true }`) take a place once
// their body has arrived (raw bodies are read by the parser before the handler; multipart forms, which the handler
// reads, are read here first and handed back to the stream) until their answer. Over --max-inflight the answer is
// 503 with Retry-After — at once, before the body is read, when every place is already taken (decoding queued
// without bound would be overload too). An upload still being received takes no place, so that slow or stalled
// clients cannot lock the others out: they are cut at --request-timeout-ms (node's receive timeouts, set in
// app.ts), and at most 2 × --max-inflight uploads from one address and 8 × in all are received at once (503
// too_many_uploads beyond).
import type { FastifyContextConfig, FastifyInstance, FastifyRequest } from 'fastify';
import type { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { ServeError } from './errors';

/** The route config that puts a route under admission. */
export const ADMIT: FastifyContextConfig & { admit: boolean } = { admit: true };

const admits = (req: FastifyRequest) => (req.routeOptions.config as { admit?: boolean } | undefined)?.admit === true;

export class Admission {
  private count = 0;
  private readonly admitted = new WeakSet<FastifyRequest>();
  /** Uploads whose body is still arriving, by client address. */
  private readonly receiving = new Map<FastifyRequest, string>();
  private readonly perAddress = new Map<string, number>();
  /** Uploads received at once from one address, and in all. */
  readonly maxReceivingPerAddress: number;
  readonly maxReceiving: number;

  constructor(
    readonly maxInflight: number,
    /** Told the number in flight whenever it changes (the metrics gauge). */
    private readonly onChange: (inflight: number) => void = () => undefined,
    /** The most bytes of a multipart body read before it is handed to the parser (its own limits refuse the rest). */
    private readonly maxBodyBytes = Infinity,
  ) {
    this.maxReceivingPerAddress = 2 * maxInflight;
    this.maxReceiving = 8 * maxInflight;
  }

  /** Admitted requests not yet answered. */
  get inflight(): number {
    return this.count;
  }

  /** Uploads accepted whose body has not arrived yet. */
  get uploading(): number {
    return this.receiving.size;
  }

  /** Every place is taken: what /readyz says. */
  get saturated(): boolean {
    return this.count >= this.maxInflight || this.receiving.size >= this.maxReceiving;
  }

  /** Installs the hooks on `app` (the root: they apply to every route registered on it and its plugins). */
  install(app: FastifyInstance): void {
    app.addHook('onRequest', async (req, reply) => {
      if (!admits(req)) return;
      this.refuseIfFull();
      const from = req.ip;
      const mine = this.perAddress.get(from) ?? 0;
      if (mine >= this.maxReceivingPerAddress || this.receiving.size >= this.maxReceiving)
        throw new ServeError(
          'too_many_uploads',
          mine >= this.maxReceivingPerAddress
            ? `${mine} uploads from ${from} are still being received (at most 2 × --max-inflight); retry shortly`
            : `${this.receiving.size} uploads are still being received (at most 8 × --max-inflight); retry shortly`,
          { headers: { 'retry-after': '1' } },
        );
      this.receiving.set(req, from);
      this.perAddress.set(from, mine + 1);
      // A client that goes away mid-request gets no onResponse: the socket's close releases its place.
      reply.raw.once('close', () => this.release(req));
    });
    // The body has arrived (a raw body is parsed by now, a multipart one is awaited): it takes a place or is refused.
    app.addHook('preHandler', async (req) => {
      if (!this.receiving.has(req)) return;
      // An injected request (tests) has its whole body at once, and no `complete` to wait for.
      if (req.isMultipart() && req.raw.socket instanceof Socket) await arrived(req.raw, this.maxBodyBytes);
      this.received(req);
      this.refuseIfFull();
      this.admitted.add(req);
      this.onChange(++this.count);
    });
    app.addHook('onResponse', async (req) => this.release(req));
    app.addHook('onRequestAbort', async (req) => this.release(req));
  }

  private refuseIfFull(): void {
    if (this.count >= this.maxInflight)
      throw new ServeError(
        'overloaded',
        `the server is at its limit of ${this.maxInflight} requests in flight (--max-inflight); retry shortly`,
        { headers: { 'retry-after': '1' } },
      );
  }

  private received(req: FastifyRequest): void {
    const from = this.receiving.get(req);
    if (from === undefined) return;
    this.receiving.delete(req);
    const n = (this.perAddress.get(from) ?? 1) - 1;
    if (n > 0) this.perAddress.set(from, n);
    else this.perAddress.delete(from);
  }

  private release(req: FastifyRequest): void {
    this.received(req);
    if (this.admitted.delete(req)) this.onChange(--this.count);
  }
}

/**
 * Waits until the whole body of `raw` has arrived, reading it (at most `max` bytes; past that the parser's limits
 * answer), and puts what it read back at the front of the stream, unconsumed: the multipart parser reads it next.
 */
async function arrived(raw: IncomingMessage, max: number): Promise<void> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  await new Promise<void>((resolve, reject) => {
    const settle = (e?: Error) => {
      raw.off('readable', onReadable);
      raw.off('close', onClose);
      raw.off('error', settle);
      if (e) return reject(e);
      // At once: the stream would end on the next tick if what was read were not back in it.
      if (bytes > 0) raw.unshift(Buffer.concat(chunks));
      resolve();
    };
    const onClose = () => settle(new ServeError('bad_request', 'the connection closed before the upload arrived'));
    const onReadable = () => {
      for (let c: Buffer | null; bytes <= max && (c = raw.read() as Buffer | null) !== null; bytes += c.length)
        chunks.push(c);
      if (raw.complete || bytes > max) settle();
    };
    raw.on('readable', onReadable);
    raw.once('close', onClose);
    raw.once('error', settle);
    onReadable();
  });
}
