/**
 * The HTTP(S) transport: a Remote that talks to `mstore serve` (docs/protocol.md §2) over
 * one keep-alive undici Agent. Uploads and downloads are streamed (wire.ts framing; the
 * receiver re-hashes), ids go in BATCH_IDS batches, and idempotent requests are retried on
 * connection errors and 502/503/504. A ref update is never retried blindly: when its outcome
 * is unknown the refs are read back to decide.
 */
import type { DeployStatus } from '../../repo/deploy-records.js';
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';
import { Agent, request, type Dispatcher } from 'undici';
import { MstoreError, errorLine, type ErrorCode } from '../../lib/errors.js';
import { BATCH_IDS, checkObjectId, checkOid, checkRefName, type FetchOptions, type ObjectKind, type RefUpdate, type Remote, type SendResult, type UpdateRefsOptions, type WireObject } from '../remote.js';
import { decodeObjects, encodeObjects, MAX_OBJECT_BYTES, WIRE_CONTENT_TYPE, WIRE_HEADER_BYTES } from '../wire.js';
import { READ_AHEAD_BYTES, readAhead } from '../../lib/read-ahead.js';
import { afterFailure, retry, type RetryPolicy } from '../../lib/retry.js';

export interface HttpRemoteOptions {
  /** Bearer token (the value of the remote's --token-env variable). */
  token?: string;
  /** Attempts for idempotent requests (default 3). */
  tries?: number;
  /** First retry delay in ms, doubled each time (default 250). */
  backoffMs?: number;
  /** Payload bytes per object-upload request (default 64 MiB): the unit of replay on a retry. */
  requestBytes?: number;
  /** Headers / body inactivity timeout of reads (default 2 min). */
  timeoutMs?: number;
  /** Headers timeout of writes, which may wait for the store lock and the post-receive hook (default 15 min). */
  writeTimeoutMs?: number;
  /** A dispatcher to use instead of the remote's own Agent (tests). */
  dispatcher?: Dispatcher;
}

const CODES = new Set<ErrorCode>(['EBADINPUT', 'EBADNAME', 'EMISSING', 'ECORRUPT', 'EREJECTED', 'EAUTH', 'ELOCKED', 'EUNKNOWNREV', 'ENOTFOUND', 'EREMOTE']);
/** Retried with backoff: a gateway's or a busy server's answers (429: this token's requests at once). */
const RETRY_STATUS = new Set([429, 502, 503, 504]);
const RETRY_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_CLOSED',
]);

/** A failure a retry may fix (the request may or may not have reached the server). */
class Transient extends MstoreError {
  constructor(message: string) {
    super('EREMOTE', message);
  }
}

/** Trust anchors for https: Node's Mozilla roots, the system bundle, and NODE_EXTRA_CA_CERTS (ignored by Node once `ca` is set). */
function caCertificates(): string[] {
  const ca = [...rootCertificates];
  const files = [process.env.SSL_CERT_FILE, '/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt', '/etc/ssl/cert.pem'];
  for (const f of files) {
    if (!f) continue;
    try {
      ca.push(readFileSync(f, 'utf8'));
      break;
    } catch {
      // next candidate
    }
  }
  const extra = process.env.NODE_EXTRA_CA_CERTS;
  if (extra) {
    try {
      ca.push(readFileSync(extra, 'utf8'));
    } catch (e) {
      throw new MstoreError('EBADINPUT', `NODE_EXTRA_CA_CERTS: cannot read ${extra}: ${(e as NodeJS.ErrnoException).code ?? errorLine(e)}`);
    }
  }
  return ca;
}

/** undici's error code, or the code of its cause (connect errors wrap the system error). */
function netCode(e: unknown): string | undefined {
  const err = e as { code?: unknown; cause?: { code?: unknown } };
  if (typeof err?.code === 'string' && err.code !== 'UND_ERR') return err.code;
  if (typeof err?.cause?.code === 'string') return err.cause.code;
  return undefined;
}

/** Replaces control characters (terminal escapes included) in text shown to the user. */
function printable(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00-\x08\x0a-\x1f\x7f\x9b]/g, '?');
}

export class HttpRemote implements Remote {
  readonly display: string;
  /** `mstore serve` receives through StoreRemote, which re-hashes everything. */
  readonly verifiesReceived = true;
  readonly releasesSent = true;
  private readonly base: URL;
  private readonly token: string | undefined;
  private readonly dispatcher: Dispatcher;
  private readonly ownDispatcher: boolean;
  private readonly tries: number;
  private readonly backoffMs: number;
  /** Idempotent requests: Transient failures are retried, and end as plain EREMOTE errors. */
  private readonly idempotent: RetryPolicy<never>;
  private readonly requestBytes: number;
  private readonly timeoutMs: number;
  private readonly writeTimeoutMs: number;
  /** Framed bytes per upload request: requestBytes, kept under the server's --max-body (GET /health). */
  private uploadLimit: number | undefined;

  constructor(url: string, opts: HttpRemoteOptions = {}) {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new MstoreError('EBADINPUT', `not a URL: '${url.replace(/\/\/[^@/]*@/, '//***@').slice(0, 200)}'`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new MstoreError('EBADINPUT', `not an http(s) URL: ${u.protocol}//${u.host}`);
    // Credentials in the URL are a token too; they never reach a message.
    this.token = opts.token ?? (u.password ? decodeURIComponent(u.password) : undefined);
    u.username = '';
    u.password = '';
    u.search = '';
    u.hash = '';
    if (!u.pathname.endsWith('/')) u.pathname += '/';
    this.base = u;
    this.display = u.pathname === '/' ? u.origin : `${u.origin}${u.pathname.slice(0, -1)}`;
    this.tries = Math.max(1, opts.tries ?? 3);
    this.backoffMs = opts.backoffMs ?? 250;
    this.idempotent = {
      attempts: this.tries,
      firstMs: this.backoffMs,
      retryable: (e) => e instanceof Transient,
      exhausted: (e) => new MstoreError('EREMOTE', (e as Transient).message),
    };
    this.requestBytes = Math.max(1, opts.requestBytes ?? 64 * 1024 * 1024);
    this.timeoutMs = opts.timeoutMs ?? 120_000;
    this.writeTimeoutMs = opts.writeTimeoutMs ?? 15 * 60_000;
    this.ownDispatcher = !opts.dispatcher;
    this.dispatcher =
      opts.dispatcher ??
      new Agent({
        keepAliveTimeout: 30_000,
        connections: 8,
        connect: u.protocol === 'https:' ? { ca: caCertificates() } : undefined,
      });
  }

  private url(route: string): URL {
    return new URL(route.replace(/^\//, ''), this.base);
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    const h: Record<string, string> = { 'user-agent': 'mstore', ...extra };
    if (this.token !== undefined) h.authorization = `Bearer ${this.token}`;
    return h;
  }

  /** One request; non-2xx answers become MstoreError (Transient for 502/503/504), network failures Transient. */
  private async send1(
    method: 'GET' | 'POST',
    route: string,
    body: string | Readable | undefined,
    contentType: string | undefined,
    write: boolean,
  ): Promise<Dispatcher.ResponseData> {
    let res: Dispatcher.ResponseData;
    try {
      res = await request(this.url(route), {
        method,
        body,
        headers: this.headers(contentType ? { 'content-type': contentType } : {}),
        dispatcher: this.dispatcher,
        headersTimeout: write ? this.writeTimeoutMs : this.timeoutMs,
        bodyTimeout: write ? this.writeTimeoutMs : this.timeoutMs,
      });
    } catch (e) {
      if (e instanceof MstoreError) throw e;
      throw this.netError(e);
    }
    if (res.statusCode >= 200 && res.statusCode < 300) return res;
    throw await this.statusError(res);
  }

  private netError(e: unknown): MstoreError {
    const code = netCode(e);
    const why = printable(errorLine(e)).slice(0, 300);
    const msg = `cannot reach ${this.display}: ${code && !why.includes(code) ? `${code} ` : ''}${why}`;
    return code === undefined || RETRY_CODES.has(code) || code.startsWith('UND_ERR_') ? new Transient(msg) : new MstoreError('EREMOTE', msg);
  }

  /** The server's `{"error":{"code","message"}}`, as an MstoreError naming the remote. */
  private async statusError(res: Dispatcher.ResponseData): Promise<MstoreError> {
    let code: string | undefined;
    let message: string | undefined;
    try {
      const text = await readLimited(res.body, 64 * 1024);
      const j = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
      if (typeof j.error?.code === 'string') code = j.error.code;
      if (typeof j.error?.message === 'string') message = printable(j.error.message).slice(0, 1000);
    } catch {
      res.body.destroy();
    }
    const s = res.statusCode;
    const what = message ?? `HTTP ${s}`;
    if (s === 401) return new MstoreError('EAUTH', `${this.display}: ${what}${this.token === undefined ? ' (no token: set the variable named by --token-env)' : ' (check the token)'}`);
    if (s === 403) return new MstoreError('EAUTH', `${this.display}: permission denied: ${what}`);
    if (RETRY_STATUS.has(s)) return new Transient(`${this.display}: HTTP ${s}${message ? `: ${message}` : ''}`);
    if (s === 507) return new MstoreError('EREMOTE', `${this.display}: the server cannot store it (HTTP 507): ${what}`);
    if (s >= 500) return new MstoreError('EREMOTE', `${this.display}: server error (HTTP ${s}): ${what}`);
    const known = code !== undefined && CODES.has(code as ErrorCode) ? (code as ErrorCode) : s === 409 ? 'EREJECTED' : s === 404 ? 'EMISSING' : 'EREMOTE';
    return new MstoreError(known, `${this.display}: ${what}`);
  }

  /** A JSON answer, retried like its request when the connection breaks while it is read. */
  private async json(method: 'GET' | 'POST', route: string, body: string | undefined, limit: number): Promise<unknown> {
    return retry(this.idempotent, async () => {
      const res = await this.send1(method, route, body, body === undefined ? undefined : 'application/json', false);
      let text: string;
      try {
        text = await readLimited(res.body, limit);
      } catch (e) {
        throw e instanceof MstoreError ? e : this.netError(e);
      }
      return parseJson(text, this.display);
    });
  }

  private getJson(route: string): Promise<unknown> {
    return this.json('GET', route, undefined, 256 * 1024 * 1024);
  }

  private postJson(route: string, value: unknown): Promise<unknown> {
    return this.json('POST', route, JSON.stringify(value), 64 * 1024 * 1024);
  }

  /** GET /health: no token needed. */
  async health(): Promise<{ ok: boolean; format: string | null; protocol: number; maxBody: number }> {
    const j = (await this.getJson('/health')) as { ok?: unknown; format?: unknown; protocol?: unknown; maxBody?: unknown };
    if (j.ok !== true || typeof j.protocol !== 'number') throw new MstoreError('EREMOTE', `${this.display} does not answer like mstore serve (GET /health)`);
    return { ok: true, format: typeof j.format === 'string' ? j.format : null, protocol: j.protocol, maxBody: typeof j.maxBody === 'number' ? j.maxBody : 0 };
  }

  /** GET /v1/deploy (docs/deploy.md). */
  async deployStatus(): Promise<DeployStatus> {
    const j = (await this.getJson('/v1/deploy')) as DeployStatus;
    if (typeof j !== 'object' || j === null || typeof j.configured !== 'boolean' || !Array.isArray(j.history)) throw new MstoreError('EREMOTE', `${this.display}: GET /v1/deploy answered something else than a deploy status`);
    return j;
  }

  private async requestLimit(): Promise<number> {
    if (this.uploadLimit === undefined) {
      const { maxBody } = await this.health();
      // A request closes once it holds `limit` bytes, so it may overrun by one object.
      this.uploadLimit = maxBody > 0 ? Math.max(1, Math.min(this.requestBytes, maxBody - MAX_OBJECT_BYTES - 2 * WIRE_HEADER_BYTES - 8)) : this.requestBytes;
    }
    return this.uploadLimit;
  }

  async listRefs(): Promise<Map<string, string>> {
    const j = (await this.getJson('/v1/refs')) as { refs?: unknown };
    if (typeof j.refs !== 'object' || j.refs === null) throw new MstoreError('EREMOTE', `${this.display}: GET /v1/refs answered without "refs"`);
    const refs = new Map<string, string>();
    for (const [name, oid] of Object.entries(j.refs as Record<string, unknown>)) {
      if (typeof oid !== 'string') throw new MstoreError('EREMOTE', `${this.display}: ref ${printable(name).slice(0, 200)} has no id`);
      try {
        checkRefName(name);
        checkOid(oid, name);
      } catch (e) {
        throw new MstoreError('EREMOTE', `${this.display} listed a bad ref: ${errorLine(e)}`);
      }
      refs.set(name, oid);
    }
    return refs;
  }

  async missing(kind: ObjectKind, ids: string[]): Promise<string[]> {
    for (const id of ids) checkObjectId(kind, id);
    const out: string[] = [];
    for (let i = 0; i < ids.length; i += BATCH_IDS) {
      const batch = ids.slice(i, i + BATCH_IDS);
      const asked = new Set(batch);
      const j = (await this.postJson('/v1/missing', { kind, ids: batch })) as { missing?: unknown };
      if (!Array.isArray(j.missing)) throw new MstoreError('EREMOTE', `${this.display}: POST /v1/missing answered without "missing"`);
      for (const id of j.missing) {
        if (typeof id !== 'string' || !asked.has(id)) throw new MstoreError('EREMOTE', `${this.display}: POST /v1/missing answered an id it was not asked about`);
        out.push(id);
      }
    }
    return out;
  }

  /**
   * Streams objects in requests of about `requestBytes` payload each. The objects of the
   * request in flight are kept until it is answered, so a connection error or 502/503/504
   * replays that request (uploads are content-addressed, hence idempotent); earlier requests
   * are stored for good on the remote.
   */
  async send(objects: AsyncIterable<WireObject>, onBytes?: (n: number) => void): Promise<SendResult> {
    // The caller's reads (pack reads, re-hashing) run ahead of the socket writes.
    const source = readAhead(objects, (o) => o.data.length, READ_AHEAD_BYTES)[Symbol.asyncIterator]();
    const total: SendResult = { objects: 0, bytes: 0 };
    let limit = this.requestBytes;
    let exhausted = false;
    let sourceError: { e: unknown } | undefined;
    let held: WireObject[] = [];
    let heldBytes = 0;
    let heldFramed = 0;
    let lastPull: Promise<unknown> = Promise.resolve();
    // Appends the next object to `held`; false at the end. A replay waits for `lastPull`, so an
    // object a cut attempt was still pulling is held before the replay reads `held`.
    const pull = (): Promise<boolean> => {
      const p = (async (): Promise<boolean> => {
        if (exhausted) return false;
        let r: IteratorResult<WireObject>;
        try {
          r = await source.next();
        } catch (e) {
          sourceError = { e };
          throw e;
        }
        if (r.done) {
          exhausted = true;
          return false;
        }
        held.push(r.value);
        heldBytes += r.value.data.length;
        heldFramed += r.value.data.length + WIRE_HEADER_BYTES;
        onBytes?.(r.value.data.length);
        return true;
      })();
      lastPull = p.catch(() => undefined);
      return p;
    };
    const objectsOf = async function* (): AsyncGenerator<WireObject> {
      await lastPull;
      for (let i = 0; ; ) {
        if (i < held.length) yield held[i++];
        else if (heldFramed >= limit || !(await pull())) return;
      }
    };
    try {
      for (;;) {
        held = [];
        heldBytes = 0;
        heldFramed = 0;
        if (!(await pull())) break;
        limit = await this.requestLimit();
        const r = await retry(this.idempotent, async () => {
          const body = Readable.from(encodeObjects(objectsOf()), { objectMode: false, highWaterMark: 1024 * 1024 });
          try {
            const res = await this.send1('POST', '/v1/objects', body, WIRE_CONTENT_TYPE, true);
            return parseJson(await readLimited(res.body, 1024 * 1024), this.display) as { objects?: unknown; bytes?: unknown };
          } catch (e) {
            if (sourceError) throw sourceError.e;
            throw e instanceof MstoreError ? e : this.netError(e);
          } finally {
            body.destroy();
          }
        });
        if (typeof r.objects !== 'number' || typeof r.bytes !== 'number') throw new MstoreError('EREMOTE', `${this.display}: POST /v1/objects answered without counts`);
        // Answered: the remote holds these for good and no replay will read them again.
        for (const o of held) o.release?.();
        total.objects += r.objects;
        total.bytes += heldBytes;
        if (exhausted) break;
      }
    } finally {
      if (!exhausted && !sourceError) await source.return?.(undefined);
    }
    return total;
  }

  /**
   * Batches of BATCH_IDS ids; every object is re-hashed by decodeObjects and must be one that
   * was asked for. A stream cut by the network is resumed with the ids not received yet, and
   * so is an answer the server ended early to bound its size (docs/protocol.md §2.4).
   */
  async *fetch(kind: ObjectKind, ids: string[], opts: FetchOptions = {}): AsyncGenerator<WireObject> {
    for (const id of ids) checkObjectId(kind, id);
    // Cut by the network: ask again for what did not arrive.
    const resume: RetryPolicy<never> = {
      attempts: this.tries,
      firstMs: this.backoffMs,
      retryable: (e) => (e instanceof MstoreError && e.code === 'EREMOTE' && /truncated|ended early/.test(e.message)) || (!(e instanceof MstoreError) && netCode(e) !== undefined),
      exhausted: (e) => new MstoreError('EREMOTE', `${this.display}: the object stream was cut (${printable(errorLine(e))})`),
    };
    for (let i = 0; i < ids.length; i += BATCH_IDS) {
      const want = new Set(ids.slice(i, i + BATCH_IDS));
      for (let attempt = 1; want.size; attempt++) {
        const res = await retry(this.idempotent, () => this.send1('POST', '/v1/fetch', JSON.stringify({ kind, ids: [...want] }), 'application/json', false));
        const before = want.size;
        try {
          // Decoding runs ahead of the caller's writes; the caller (pull.ts) re-hashes every object.
          const body = res.body;
          for await (const o of readAhead(decodeObjects(body, { source: this.display, check: false, pool: opts.pool }), (x) => x.data.length, READ_AHEAD_BYTES, () => body.destroy())) {
            // Content the server holds as a recipe comes as one when its file is asked for.
            if ((o.kind !== kind && !(kind === 'file' && o.kind === 'recipe')) || !want.has(o.id)) throw new MstoreError('EREMOTE', `${this.display} sent ${o.kind} ${o.id}, which was not asked for`);
            want.delete(o.id);
            yield o;
          }
        } catch (e) {
          await afterFailure(resume, e, attempt);
          continue;
        }
        // A server bounds the bytes of one answer (--max-fetch-bytes): an answer that brought
        // something is followed by a request for the rest; one that brought nothing is an error.
        if (want.size && want.size === before) throw new MstoreError('EREMOTE', `${this.display} did not send ${want.size} of the ${kind} objects asked for`);
        attempt = 0;
      }
    }
  }

  /**
   * Never retried blindly: when the outcome is unknown (the connection broke, 502/503/504, an
   * answer without its last line) the refs are read back. Every ref at its new value: it
   * happened. Every ref still at its old value: it did not, and sending it again is safe — the
   * compare-and-swap lets at most one of the two apply (a late first attempt, or the retry,
   * finds the refs moved and is rejected; a rejection after an unsure attempt is read back too).
   */
  async updateRefs(updates: RefUpdate[], opts: UpdateRefsOptions = {}): Promise<void> {
    for (const u of updates) {
      checkRefName(u.ref);
      if (u.old !== null) checkOid(u.old, `${u.ref} old`);
      if (u.new !== null) checkOid(u.new, `${u.ref} new`);
    }
    const body = JSON.stringify({ updates, force: !!opts.force, ...(opts.message !== undefined ? { message: opts.message } : {}) });
    const notUpdated = (unsure: unknown) => new MstoreError('EREMOTE', `${(unsure as MstoreError).message}; the refs were not updated (run the push again)`);
    await retry<void>(
      {
        attempts: this.tries,
        firstMs: this.backoffMs,
        // Unsure: Transient, or a rejection after an unsure attempt (perhaps our own first one).
        retryable: (e, attempt) => e instanceof Transient || (attempt > 1 && e instanceof MstoreError && e.code === 'EREJECTED'),
        settle: async (e) => {
          const unsure = e as MstoreError;
          let now: Map<string, string>;
          try {
            now = await this.listRefs();
          } catch {
            throw new MstoreError('EREMOTE', `${unsure.message}; the outcome of the ref update is unknown (run the push again: it is safe)`);
          }
          if (updates.every((u) => (now.get(u.ref) ?? null) === u.new)) return { value: undefined };
          if (unsure.code === 'EREJECTED') throw unsure;
          if (!updates.every((u) => (now.get(u.ref) ?? null) === u.old)) throw notUpdated(unsure);
          return undefined; // untouched: sending it again is safe
        },
        exhausted: notUpdated,
      },
      () => this.updateOnce(body, opts),
    );
  }

  /** One POST /v1/refs/update; Transient when its outcome is unknown. */
  private async updateOnce(body: string, opts: UpdateRefsOptions): Promise<void> {
    let outcome: 'ok' | MstoreError | undefined;
    const res = await this.send1('POST', '/v1/refs/update', body, 'application/json', true);
    let rest = '';
    const onLine = (line: string): void => {
      if (!line.trim()) return;
      let rec: { remote?: unknown; ok?: unknown; error?: { code?: unknown; message?: unknown } };
      try {
        rec = JSON.parse(line) as typeof rec;
      } catch {
        throw new Transient(`${this.display}: the ref update answered a line that is not JSON`);
      }
      if (typeof rec.remote === 'string') opts.onRemoteOutput?.(printable(rec.remote));
      else if (rec.ok === true) outcome = 'ok';
      else if (rec.error) {
        const code = typeof rec.error.code === 'string' && CODES.has(rec.error.code as ErrorCode) ? (rec.error.code as ErrorCode) : 'EREMOTE';
        outcome = new MstoreError(code, `${this.display}: ${printable(String(rec.error.message ?? 'ref update failed')).slice(0, 1000)}`);
      }
    };
    const utf8 = new TextDecoder(); // a character may straddle two pieces
    try {
      for await (const piece of res.body as AsyncIterable<Buffer>) {
        rest += utf8.decode(piece, { stream: true });
        let nl: number;
        while ((nl = rest.indexOf('\n')) >= 0) {
          onLine(rest.slice(0, nl));
          rest = rest.slice(nl + 1);
        }
        if (rest.length > 1024 * 1024) throw new Transient(`${this.display}: the ref update answered a line over 1 MiB`);
      }
      onLine(rest);
    } catch (e) {
      if (outcome === undefined) throw e instanceof MstoreError ? e : this.netError(e);
    }
    if (outcome === 'ok') return;
    if (outcome) throw outcome;
    throw new Transient(`${this.display}: the ref update's answer ended without an outcome`);
  }

  async close(): Promise<void> {
    if (this.ownDispatcher) await this.dispatcher.close();
  }
}

async function readLimited(body: AsyncIterable<Buffer> & { destroy(): unknown }, limit: number): Promise<string> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const b of body) {
    n += b.length;
    if (n > limit) {
      body.destroy();
      throw new MstoreError('EREMOTE', `answer over ${limit} bytes`);
    }
    parts.push(b);
  }
  return Buffer.concat(parts).toString('utf8');
}

function parseJson(text: string, display: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new MstoreError('EREMOTE', `${display} answered something that is not JSON (is it mstore serve?)`);
  }
}
