/**
 * `mstore serve` as a library: a thin HTTP(S) façade over one Remote (a StoreRemote on the
 * served store), routes and wire format in docs/protocol.md §2. It never prints (one line per
 * request goes to the `log` callback) and never exits; `close()` drains in-flight requests.
 *
 * What the façade adds to the Remote: bearer-token scopes (compared in constant time, never
 * logged), canonical paths only, body limits (413 before reading when Content-Length is over,
 * mid-stream otherwise), heavy requests at once per token and in all, bytes per fetch answer
 * (http-limits.ts), id and ref-name checks at the boundary, HTTP statuses for MstoreError codes,
 * error messages without server paths, and the post-receive hook output of a ref update
 * streamed back as NDJSON.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { MstoreError, errorLine, type ErrorCode } from '../../lib/errors.js';
import { BATCH_IDS, checkObjectId, checkOid, checkRefName, type ObjectKind, type Remote, type RefUpdate, type WireObject } from '../remote.js';
import { decodeObjects, encodeObjects, MAX_OBJECT_BYTES, WIRE_CONTENT_TYPE } from '../wire.js';
import { READ_AHEAD_BYTES, readAhead } from '../../lib/read-ahead.js';
import { answerHub, looksLikeHubTarget, parseHubRequest, type HubSource } from './http-hub.js';
import { SCOPE_RANK, tokenScope, type Scope, type TokenEntry } from './http-tokens.js';
import { canonicalPath, DEFAULT_MAX_FETCH_BYTES, FETCH_AHEAD_TOTAL, HEAVY_PER_TOKEN, HEAVY_TOTAL, HttpError, MAX_IDS_BODY, redactPaths, Slots } from './http-limits.js';

export const PROTOCOL_VERSION = 1;
export const NDJSON_CONTENT_TYPE = 'application/x-ndjson';
/** Largest ref-update body (push scope); missing / fetch take MAX_IDS_BODY (http-limits.ts). */
export const MAX_JSON_BYTES = 16 * 1024 * 1024;
/** Default and smallest --max-body: one request must be able to carry the largest object. */
export const DEFAULT_MAX_BODY = 1024 * 1024 * 1024;
export const MIN_MAX_BODY = MAX_OBJECT_BYTES + 1024 * 1024;
/** Ref updates per request: a push moves a line, its tags and notes, not thousands of refs. */
export const MAX_REF_UPDATES = 10_000;
export interface ServerOptions {
  remote: Remote;
  tokens: TokenEntry[];
  host: string;
  port: number;
  tls?: { cert: Buffer; key: Buffer };
  /** Largest object-upload body in bytes (default 1 GiB; at least MIN_MAX_BODY). */
  maxBody?: number;
  /** Reported by GET /health (the store's format). */
  format?: string;
  /** One line per request, and warnings. Never receives headers or tokens. */
  log?: (line: string) => void;
  /** Payload bytes of one fetch answer (default 256 MiB); the client asks again for the rest. */
  maxFetchBytes?: number;
  /** Heavy requests (missing, fetch, uploads) at once per token (default 4) and in all (default 8). */
  heavyPerToken?: number;
  heavyTotal?: number;
  /** Server paths that never appear in an error body (the store directory). */
  redact?: string[];
  /** The read side of the Hugging Face Hub API for one repository id (http-hub.ts); absent: no Hub routes. */
  hub?: { source: HubSource; repoId: string };
  /** The web view (src/web/): answers `/` and everything under `/ui/`, with its own login (a form, then a session cookie); tokens are checked with `scopeOf`. Absent: those paths are 404. */
  web?: WebView;
  /** Time to receive a request's headers (default 60 s). */
  headersTimeoutMs?: number;
  /** Time to receive a whole request, body included (default 30 min). */
  requestTimeoutMs?: number;
  /** A socket silent this long is closed (default 15 min: longer than a writer may wait for the store lock). */
  idleTimeoutMs?: number;
}

/** What the server needs of the web view; it sits above this layer and is passed in. */
export interface WebView {
  /** Answers one request whole (errors included); returns the scope it ran with, for the log line. */
  handle(req: http.IncomingMessage, res: http.ServerResponse, scopeOf: (token: string) => Scope | undefined): Promise<Scope | '-'>;
}

/** `/`, `/ui` and `/ui/…` (query aside) belong to the web view. */
function isWebTarget(target: string): boolean {
  const p = target.split('?')[0];
  return p === '/' || p === '/ui' || p.startsWith('/ui/');
}

/**
 * Ends a response whose body is written once the request's body has arrived (drained, up to
 * 2 s, then the socket is cut): a client still sending when the answer is ready (413, 401 on
 * an upload) reads the answer instead of a reset connection.
 */
export function endAfterBody(req: http.IncomingMessage, res: http.ServerResponse, onData?: (bytes: number) => void): void {
  const socket: Socket = req.socket;
  const finish = (): void => {
    clearTimeout(t);
    if (!res.writableEnded) res.end();
  };
  const t = setTimeout(() => {
    finish();
    socket.destroy();
  }, 2000);
  t.unref();
  req.on('end', finish);
  req.on('error', finish);
  if (onData) req.on('data', (b: Buffer) => onData(b.length));
  req.resume();
}

export interface MstoreServer {
  /** `http(s)://HOST:PORT` with the port actually bound. */
  readonly url: string;
  readonly port: number;
  /** Stops accepting, waits up to `graceMs` (default 30 s) for in-flight requests, then cuts the rest and waits for their handlers. */
  close(graceMs?: number): Promise<void>;
}

/** The HTTP status of each MstoreError code (unlisted: 500); the web view answers with the same. */
export const HTTP_STATUS: Partial<Record<ErrorCode, number>> = {
  EUSAGE: 400,
  EBADINPUT: 400,
  EBADNAME: 400,
  EAUTH: 403,
  EUNKNOWNREV: 404,
  ENOTFOUND: 404,
  EMISSING: 404,
  EREJECTED: 409,
  EEXISTS: 409,
  ECORRUPT: 422,
  ELOCKED: 503,
  // Insufficient Storage (RFC 4918): the device refused the write, not the request; nothing published.
  ESTORAGE: 507,
};

interface Ctx {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  scope: Scope | '-';
  bytesIn: number;
  bytesOut: number;
  /** The request body was not read to its end: drain it briefly after the response (linger). */
  bodyLeft: boolean;
  /** The presented token's digest (hex): the key of its heavy-request slots. Never logged. */
  tokenKey: string;
  /** Why the upload body failed (bad framing or hash, over the limit, cut): the client's fault. */
  bodyFailed?: unknown;
}

const KINDS: ObjectKind[] = ['chunk', 'file', 'git'];

export async function startServer(opts: ServerOptions): Promise<MstoreServer> {
  const maxBody = opts.maxBody ?? DEFAULT_MAX_BODY;
  if (!Number.isSafeInteger(maxBody) || maxBody < MIN_MAX_BODY) {
    throw new MstoreError('EUSAGE', `--max-body must be at least ${MIN_MAX_BODY} bytes (the largest object and its framing)`);
  }
  const maxFetchBytes = opts.maxFetchBytes ?? DEFAULT_MAX_FETCH_BYTES;
  if (!Number.isSafeInteger(maxFetchBytes) || maxFetchBytes < 1) throw new MstoreError('EUSAGE', '--max-fetch-bytes must be a positive number of bytes');
  const heavyTotal = opts.heavyTotal ?? HEAVY_TOTAL;
  const slots = new Slots(opts.heavyPerToken ?? HEAVY_PER_TOKEN, heavyTotal);
  const fetchAhead = Math.min(READ_AHEAD_BYTES, Math.max(MAX_OBJECT_BYTES, Math.floor(FETCH_AHEAD_TOTAL / heavyTotal)));
  const redact = opts.redact ?? [];
  const log = opts.log ?? (() => undefined);
  const remote = opts.remote;
  const inFlight = new Set<Promise<void>>();
  let closing = false;

  const handle = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const started = performance.now();
    const ctx: Ctx = { req, res, scope: '-', bytesIn: 0, bytesOut: 0, bodyLeft: true, tokenKey: '' };
    let logged = false;
    const done = (): void => {
      if (logged) return;
      logged = true;
      const ms = Math.round(performance.now() - started);
      const pathOnly = (req.url ?? '').split('?')[0].replace(/[^\x21-\x7e]/g, '?').slice(0, 200);
      const cut = res.writableFinished ? '' : ' (cut)';
      log(`${req.socket.remoteAddress ?? '-'} ${req.method} ${pathOnly} ${res.statusCode} in=${ctx.bytesIn} out=${ctx.bytesOut} ${ms}ms scope=${ctx.scope}${cut}`);
    };
    res.on('close', done);
    res.on('error', () => undefined);
    const p = route(ctx)
      .catch((e: unknown) => sendError(ctx, e))
      .catch(() => undefined)
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
  };

  async function route(ctx: Ctx): Promise<void> {
    const { req } = ctx;
    const method = req.method ?? 'GET';
    if (closing) throw new HttpError(503, 'EREMOTE', 'the server is shutting down', { 'retry-after': '5' });
    if (opts.hub && looksLikeHubTarget(req.url ?? '')) return hubRequest(ctx, opts.hub);
    if (opts.web && isWebTarget(req.url ?? '')) {
      ctx.bodyLeft = false;
      ctx.scope = await opts.web.handle(req, ctx.res, (t) => tokenScope(opts.tokens, t));
      return;
    }
    const pathname = canonicalPath(req.url);
    if (pathname === '/health') {
      allow(method, ['GET', 'HEAD']);
      return sendJson(ctx, 200, { ok: true, format: opts.format ?? null, protocol: PROTOCOL_VERSION, maxBody, maxIds: BATCH_IDS });
    }
    // Heavy: they read ids or objects and may stream for long; counted per token and in all.
    const routes: Record<string, { method: string; scope: Scope; run: (ctx: Ctx) => Promise<void>; heavy?: true }> = {
      '/v1/refs': { method: 'GET', scope: 'read', run: listRefs },
      '/v1/missing': { method: 'POST', scope: 'read', run: missing, heavy: true },
      '/v1/fetch': { method: 'POST', scope: 'read', run: fetchObjects, heavy: true },
      '/v1/objects': { method: 'POST', scope: 'push', run: receiveObjects, heavy: true },
      '/v1/refs/update': { method: 'POST', scope: 'push', run: updateRefs },
      '/v1/deploy': { method: 'GET', scope: 'read', run: deployInfo },
    };
    const r = Object.hasOwn(routes, pathname) ? routes[pathname] : undefined;
    if (!r) throw new HttpError(404, 'EBADINPUT', `no such route: ${method} ${pathname.replace(/[^\x21-\x7e]/g, '?').slice(0, 200)}`);
    allow(method, [r.method]);
    authorize(ctx, r.scope);
    if (!r.heavy) return r.run(ctx);
    const release = slots.take(ctx.tokenKey);
    try {
      await r.run(ctx);
    } finally {
      release();
    }
  }

  /** A Hub API request (http-hub.ts): read scope; a file download takes a heavy-request slot. */
  async function hubRequest(ctx: Ctx, hub: { source: HubSource; repoId: string }): Promise<void> {
    const method = ctx.req.method ?? 'GET';
    allow(method, ['GET', 'HEAD']);
    authorize(ctx, 'read');
    ctx.bodyLeft = false;
    const r = parseHubRequest(ctx.req.url ?? '', hub.repoId);
    if (!r) throw new HttpError(404, 'ENOTFOUND', 'no such route');
    const reply = {
      json: (status: number, value: unknown, headers: Record<string, string> = {}): void => sendJson(ctx, status, value, headers),
      stream: async (status: number, headers: Record<string, string>, body: AsyncIterable<Buffer> | undefined): Promise<void> => {
        // The first verified bytes come before the status line: a damaged first chunk is an error answer, not a cut one.
        const it = body?.[Symbol.asyncIterator]();
        try {
          const first = await it?.next();
          ctx.res.writeHead(status, headers);
          if (first && !first.done) {
            await write(ctx, first.value);
            for (let n = await it!.next(); !n.done; n = await it!.next()) await write(ctx, n.value);
          }
          ctx.res.end();
        } finally {
          await it?.return?.(); // a client gone or a damaged chunk: the reader's files are closed
        }
      },
    };
    if (r.kind !== 'file') return answerHub(r, method, undefined, hub.source, hub.repoId, reply);
    const release = slots.take(ctx.tokenKey);
    try {
      await answerHub(r, method, ctx.req.headers.range, hub.source, hub.repoId, reply);
    } finally {
      release();
    }
  }

  function allow(method: string, methods: string[]): void {
    if (!methods.includes(method)) throw new HttpError(405, 'EBADINPUT', `method ${method} not allowed here (${methods.join(', ')})`, { allow: methods.join(', ') });
  }

  function authorize(ctx: Ctx, need: Scope): void {
    const h = ctx.req.headers.authorization;
    const m = h ? /^Bearer +([\x21-\x7e]+) *$/i.exec(h) : null;
    const challenge = { 'www-authenticate': 'Bearer realm="mstore"' };
    if (!m) throw new HttpError(401, 'EAUTH', 'authentication required (Authorization: Bearer TOKEN)', challenge);
    const scope = tokenScope(opts.tokens, m[1]);
    ctx.tokenKey = createHash('sha256').update(m[1]).digest('hex');
    if (!scope) throw new HttpError(401, 'EAUTH', 'unknown token', { 'www-authenticate': 'Bearer realm="mstore", error="invalid_token"' });
    ctx.scope = scope;
    if (SCOPE_RANK[scope] < SCOPE_RANK[need]) throw new HttpError(403, 'EAUTH', `this token has scope '${scope}'; the request needs '${need}'`);
  }

  async function listRefs(ctx: Ctx): Promise<void> {
    ctx.bodyLeft = false;
    const refs = await remote.listRefs();
    sendJson(ctx, 200, { refs: Object.fromEntries([...refs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) });
  }

  /** The served store's deploy state (docs/deploy.md): configuration, live version, attempts. */
  async function deployInfo(ctx: Ctx): Promise<void> {
    ctx.bodyLeft = false;
    if (!remote.deployStatus) throw new HttpError(404, 'EBADINPUT', 'this server has no deploy state');
    const st = await remote.deployStatus();
    // Where the box deploys is a path on its file system: shown to push and admin tokens only.
    sendJson(ctx, 200, ctx.scope === 'read' ? { ...st, root: undefined } : st);
  }

  /** A missing / fetch request: its kind and its ids, each once. */
  function idsRequest(body: unknown): { kind: ObjectKind; ids: string[] } {
    const b = body as { kind?: unknown; ids?: unknown };
    if (typeof b !== 'object' || b === null || !KINDS.includes(b.kind as ObjectKind)) throw new HttpError(400, 'EBADINPUT', `"kind" must be one of ${KINDS.join(', ')}`);
    if (!Array.isArray(b.ids) || !b.ids.every((id): id is string => typeof id === 'string')) throw new HttpError(400, 'EBADINPUT', '"ids" must be an array of strings');
    if (b.ids.length > BATCH_IDS) throw new HttpError(400, 'EBADINPUT', `at most ${BATCH_IDS} ids per request, got ${b.ids.length}`);
    const kind = b.kind as ObjectKind;
    for (const id of b.ids) checkObjectId(kind, id);
    return { kind, ids: [...new Set(b.ids)] };
  }

  async function missing(ctx: Ctx): Promise<void> {
    const { kind, ids } = idsRequest(await readJson(ctx, MAX_IDS_BODY));
    sendJson(ctx, 200, { missing: await remote.missing(kind, ids) });
  }

  /**
   * The first object is produced before the status is sent, so an unknown id is a 404. An
   * error after that cuts the connection: the client sees a truncated stream, never a
   * well-formed one missing objects. An answer ends (well-formed) once it holds maxFetchBytes of
   * payload: the client asks again for the ids it did not get.
   */
  async function fetchObjects(ctx: Ctx): Promise<void> {
    const { kind, ids } = idsRequest(await readJson(ctx, MAX_IDS_BODY));
    // Reads of the next objects overlap with sending this one; the bytes read ahead are bounded
    // for all fetches at once together (FETCH_AHEAD_TOTAL over the heavy-request slots).
    const it = readAhead(remote.fetch(kind, ids), (o) => o.data.length, fetchAhead)[Symbol.asyncIterator]();
    try {
      const first = await it.next();
      ctx.res.writeHead(200, { 'content-type': WIRE_CONTENT_TYPE, 'cache-control': 'no-store' });
      async function* all(): AsyncGenerator<WireObject> {
        if (first.done) return;
        let payload = first.value.data.length;
        yield first.value;
        while (payload < maxFetchBytes) {
          const r = await it.next();
          if (r.done) return;
          payload += r.value.data.length;
          yield r.value;
        }
      }
      try {
        for await (const buf of encodeObjects(all())) await write(ctx, buf);
        ctx.res.end();
      } catch (e) {
        log(`fetch cut: ${errorLine(e)}`);
        ctx.res.destroy();
      }
    } finally {
      await it.return?.(undefined);
    }
  }

  async function receiveObjects(ctx: Ctx): Promise<void> {
    const { req } = ctx;
    const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    if (type !== WIRE_CONTENT_TYPE) throw new HttpError(415, 'EBADINPUT', `object uploads are ${WIRE_CONTENT_TYPE}, not '${type.slice(0, 80)}'`);
    checkLength(ctx, maxBody);
    let result;
    try {
      result = await remote.send(bodyObjects(ctx));
    } catch (e) {
      // Whatever the Remote made of it, a failed body is the client's fault (4xx), not the store's.
      if (ctx.bodyFailed !== undefined) throw bodyFailure(ctx.bodyFailed);
      throw e;
    }
    sendJson(ctx, 200, { objects: result.objects, bytes: result.bytes });
  }

  /** The request body as checked objects; a failure of the body itself is recorded in ctx.bodyFailed. */
  async function* bodyObjects(ctx: Ctx): AsyncGenerator<WireObject> {
    // Not re-hashed while parsing: Remote.send's receiver re-hashes every object (hashing each
    // byte twice on the server cost ~0.7 s per GiB).
    const source = decodeObjects(body(ctx, maxBody), { source: 'the request body', check: false, pool: remote.pool });
    for (;;) {
      let r: IteratorResult<WireObject>;
      try {
        r = await source.next();
      } catch (e) {
        ctx.bodyFailed = e;
        throw e;
      }
      if (r.done) return;
      yield r.value;
    }
  }

  function bodyFailure(e: unknown): MstoreError {
    if (e instanceof HttpError) return e;
    if (e instanceof MstoreError && e.code === 'ECORRUPT') return new HttpError(422, 'ECORRUPT', `rejected: ${e.message}`);
    if (e instanceof MstoreError) return new HttpError(400, 'EBADINPUT', e.message);
    return new HttpError(400, 'EBADINPUT', `the request body was cut (${errorLine(e)})`);
  }

  async function updateRefs(ctx: Ctx): Promise<void> {
    const b = (await readJson(ctx)) as { updates?: unknown; force?: unknown; message?: unknown };
    if (typeof b !== 'object' || b === null || !Array.isArray(b.updates) || !b.updates.length) throw new HttpError(400, 'EBADINPUT', '"updates" must be a non-empty array');
    if (b.updates.length > MAX_REF_UPDATES) throw new HttpError(400, 'EBADINPUT', `at most ${MAX_REF_UPDATES} ref updates per request`);
    if (b.force !== undefined && typeof b.force !== 'boolean') throw new HttpError(400, 'EBADINPUT', '"force" must be a boolean');
    if (b.message !== undefined && (typeof b.message !== 'string' || b.message.length > 4096)) throw new HttpError(400, 'EBADINPUT', '"message" must be a string of at most 4096 characters');
    const seen = new Set<string>();
    const updates: RefUpdate[] = b.updates.map((u: unknown, i: number) => {
      const x = u as { ref?: unknown; old?: unknown; new?: unknown };
      if (typeof x !== 'object' || x === null || typeof x.ref !== 'string') throw new HttpError(400, 'EBADINPUT', `updates[${i}]: "ref" must be a string`);
      checkRefName(x.ref);
      if (seen.has(x.ref)) throw new HttpError(400, 'EBADINPUT', `updates[${i}]: ${x.ref} is updated twice`);
      seen.add(x.ref);
      for (const k of ['old', 'new'] as const) {
        if (x[k] !== null && typeof x[k] !== 'string') throw new HttpError(400, 'EBADINPUT', `updates[${i}]: "${k}" must be a 40-hex id or null`);
        if (typeof x[k] === 'string') checkOid(x[k], `updates[${i}].${k}`);
      }
      return { ref: x.ref, old: x.old as string | null, new: x.new as string | null };
    });
    const message = typeof b.message === 'string' ? b.message.replace(/[\x00-\x1f\x7f]/g, ' ') : undefined;
    // The status waits for the outcome or the first hook line, whichever comes first: a
    // rejection before any output is a plain 409; after output it is the stream's last record.
    const { res } = ctx;
    const pending: string[] = [];
    let writing = Promise.resolve();
    const line = (o: unknown): void => {
      pending.push(`${JSON.stringify(o)}\n`);
      if (!res.headersSent) res.writeHead(200, { 'content-type': NDJSON_CONTENT_TYPE, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
      writing = writing.then(async () => {
        while (pending.length) await write(ctx, Buffer.from(pending.shift()!, 'utf8'));
      });
      writing.catch(() => undefined);
    };
    try {
      await remote.updateRefs(updates, { force: b.force === true, message, onRemoteOutput: (l) => line({ remote: l }) });
    } catch (e) {
      if (!res.headersSent) throw e;
      line(errorBody(e));
      await writing.catch(() => undefined);
      res.end();
      return;
    }
    line({ ok: true });
    await writing.catch(() => undefined);
    res.end();
  }

  function checkLength(ctx: Ctx, limit: number): void {
    const len = ctx.req.headers['content-length'];
    if (len !== undefined && Number(len) > limit) throw new HttpError(413, 'EBADINPUT', `request body of ${len} bytes is over the ${limit}-byte limit`);
  }

  /** The request body, counted; over `limit` it throws 413 (chunked bodies have no length up front). */
  async function* body(ctx: Ctx, limit: number): AsyncGenerator<Buffer> {
    // destroyOnReturn false: an early stop must not destroy the socket before the error response is written.
    for await (const b of ctx.req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
      ctx.bytesIn += b.length;
      if (ctx.bytesIn > limit) throw new HttpError(413, 'EBADINPUT', `request body is over the ${limit}-byte limit`);
      yield b;
    }
    ctx.bodyLeft = false;
  }

  /** A JSON body of at most `limit` bytes: 413 before reading (Content-Length) or as soon as it is over. */
  async function readJson(ctx: Ctx, limit = MAX_JSON_BYTES): Promise<unknown> {
    checkLength(ctx, limit);
    const parts: Buffer[] = [];
    for await (const b of body(ctx, limit)) parts.push(b);
    try {
      return JSON.parse(Buffer.concat(parts).toString('utf8')) as unknown;
    } catch {
      throw new HttpError(400, 'EBADINPUT', 'the request body is not valid JSON');
    }
  }

  /** Writes with backpressure; rejects when the client is gone (a stuck drain would leak the handler). */
  function write(ctx: Ctx, buf: Buffer): Promise<void> {
    const { res } = ctx;
    if (res.destroyed || res.writableEnded) return Promise.reject(new Error('the client went away'));
    ctx.bytesOut += buf.length;
    if (res.write(buf)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const ok = (): void => {
        res.off('close', gone);
        resolve();
      };
      const gone = (): void => {
        res.off('drain', ok);
        reject(new Error('the client went away'));
      };
      res.once('drain', ok);
      res.once('close', gone);
    });
  }

  function sendJson(ctx: Ctx, status: number, value: unknown, headers: Record<string, string> = {}): void {
    const { res } = ctx;
    const text = Buffer.from(`${JSON.stringify(value)}\n`, 'utf8');
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(text.length), 'cache-control': 'no-store', ...headers });
    ctx.bytesOut += text.length;
    if (ctx.bodyLeft && !ctx.req.complete) {
      res.write(text);
      linger(ctx);
    } else res.end(ctx.req.method === 'HEAD' ? undefined : text);
  }

  /** The body of an error answer; messages from below the façade pass the one path redaction. */
  function errorBody(e: unknown): { error: { code: string; message: string } } {
    const code = e instanceof MstoreError ? e.code : 'EREMOTE';
    const line = errorLine(e).replace(/[\x00-\x1f\x7f]/g, ' ');
    return { error: { code, message: (e instanceof HttpError ? line : redactPaths(line, redact)).slice(0, 2000) } };
  }

  function sendError(ctx: Ctx, e: unknown): void {
    const { res } = ctx;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const status = e instanceof HttpError ? e.status : e instanceof MstoreError ? (HTTP_STATUS[e.code] ?? 500) : 500;
    const body = errorBody(e);
    if (status >= 500 && !(e instanceof HttpError)) log(`error: ${ctx.req.method} ${(ctx.req.url ?? '').split('?')[0].slice(0, 200)}: ${body.error.message}`);
    sendJson(ctx, status, body, e instanceof HttpError ? e.headers : {});
  }

  /**
   * Answers a request whose body was not read to its end (401 on an upload, 413, a bad
   * chunk): the answer is written whole (it has a Content-Length, so the client can read it
   * while still sending), but the response ends only once the client has finished sending, or
   * after 2 s. Ending at once makes node close the socket (the client may have sent
   * `Connection: close`), and the kernel answers the client's next write with RST: most
   * clients then report "connection reset" instead of the answer they were sent.
   */
  function linger(ctx: Ctx): void {
    endAfterBody(ctx.req, ctx.res, (n) => (ctx.bytesIn += n));
  }

  const serverOpts: http.ServerOptions = {
    headersTimeout: opts.headersTimeoutMs ?? 60_000,
    requestTimeout: opts.requestTimeoutMs ?? 30 * 60_000,
    keepAliveTimeout: 5_000,
    maxHeaderSize: 16 * 1024,
  };
  const server = opts.tls ? https.createServer({ ...serverOpts, cert: opts.tls.cert, key: opts.tls.key }, handle) : http.createServer(serverOpts, handle);
  server.timeout = opts.idleTimeoutMs ?? 15 * 60_000;
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
    if (socket.writable && !socket.destroyed) socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    else socket.destroy();
    // A client that goes away mid-request (ECONNRESET, or EOF inside a body) is no news.
    if (err.code !== 'ECONNRESET' && err.code !== 'HPE_INVALID_EOF_STATE') log(`client error: ${err.code ?? errorLine(err)}`);
  });
  if (opts.tls) server.on('tlsClientError', (err: NodeJS.ErrnoException) => log(`tls client error: ${err.code ?? errorLine(err)}`));

  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(new MstoreError('EBADINPUT', `cannot listen on ${opts.host}:${opts.port}: ${e.code ?? errorLine(e)}`)));
    server.listen(opts.port, opts.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const hostPart = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  const url = `${opts.tls ? 'https' : 'http'}://${hostPart}:${port}`;

  return {
    url,
    port,
    async close(graceMs = 30_000): Promise<void> {
      if (closing) return;
      closing = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const grace = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
      await Promise.race([Promise.all([...inFlight]), grace]);
      server.closeAllConnections();
      // Cut uploads end their handlers quickly (the body throws); a ref update finishes its hook.
      await Promise.all([...inFlight]);
      await closed;
    },
  };
}
