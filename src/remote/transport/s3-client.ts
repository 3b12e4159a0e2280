/**
 * The S3 transport's requests (docs/protocol.md §3): the AWS SDK client, loaded lazily so that
 * commands that never touch S3 do not pay for it; keys under the remote's prefix; SDK failures
 * as one-line MstoreErrors naming the key, never the credentials; and the bounded parallelism
 * of small requests and range GETs. What the keys hold is s3.ts's and s3-packs.ts's.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { MstoreError } from '../../lib/errors.js';

type S3Module = typeof import('@aws-sdk/client-s3');

export interface S3Options {
  /** http(s)://host:port of an S3-compatible service; default AWS_ENDPOINT_URL, else AWS itself. */
  endpoint?: string;
  /** Default AWS_REGION, else us-east-1 (what RGW and MinIO accept). */
  region?: string;
  /** Default AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, else the SDK's credential chain. */
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Where immutable .idx objects are kept between runs (else in memory only). */
  cacheDir?: string;
}

/** s3://bucket/prefix -> bucket, prefix (no leading or trailing slash). */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/?#]+)\/*([^?#]*)$/i.exec(url);
  // eslint-disable-next-line no-control-regex
  if (!m) throw new MstoreError('EBADINPUT', `'${url.slice(0, 200).replace(/[\x00-\x1f\x7f]/g, '?')}' is not an s3://BUCKET/PREFIX URL`);
  const bucket = m[1];
  if (!/^[a-zA-Z0-9][a-zA-Z0-9._-]{1,62}$/.test(bucket)) throw new MstoreError('EBADINPUT', `'${bucket.slice(0, 80)}' is not a valid bucket name`);
  const prefix = m[2].replace(/\/+$/, '');
  // eslint-disable-next-line no-control-regex
  if (prefix && (prefix.split('/').some((c) => c === '' || c === '.' || c === '..') || /[\x00-\x1f\x7f\\]/.test(prefix))) {
    // eslint-disable-next-line no-control-regex
    throw new MstoreError('EBADINPUT', `s3://${bucket}/${prefix.slice(0, 200).replace(/[\x00-\x1f\x7f]/g, '?')}: the prefix may not hold empty, '.' or '..' components, control characters or '\\'`);
  }
  return { bucket, prefix };
}

interface S3ErrorLike {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

function statusOf(e: unknown): number | undefined {
  return (e as S3ErrorLike | undefined)?.$metadata?.httpStatusCode;
}

function isNotFound(e: unknown): boolean {
  const n = (e as S3ErrorLike | undefined)?.name;
  return statusOf(e) === 404 && n !== 'NoSuchBucket';
}

/** A failure that keeps the HTTP status, for callers that tell a lost race from other failures. */
export type S3Failure = MstoreError & { status?: number };

/** The HTTP status of a failed put (S3Failure), when S3 answered. */
export function failureStatus(e: unknown): number | undefined {
  return (e as S3Failure | undefined)?.status;
}

/** The bucket and key prefix of one remote, and the requests to it. */
export class S3Bucket {
  readonly display: string;
  readonly bucket: string;
  readonly prefix: string;
  private readonly endpoint: string | undefined;
  private readonly region: string;
  private readonly credentials: { accessKeyId: string; secretAccessKey: string } | undefined;
  private sdk: Promise<{ mod: S3Module; client: S3Client }> | undefined;

  constructor(url: string, opts: S3Options = {}) {
    const { bucket, prefix } = parseS3Url(url);
    this.bucket = bucket;
    this.prefix = prefix;
    this.display = `s3://${bucket}${prefix ? `/${prefix}` : ''}`;
    this.endpoint = opts.endpoint ?? (process.env.AWS_ENDPOINT_URL_S3 || process.env.AWS_ENDPOINT_URL || undefined);
    this.region = opts.region ?? (process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || 'us-east-1');
    const accessKeyId = opts.accessKeyId ?? process.env.AWS_ACCESS_KEY_ID;
    const secretAccessKey = opts.secretAccessKey ?? process.env.AWS_SECRET_ACCESS_KEY;
    this.credentials = accessKeyId && secretAccessKey ? { accessKeyId, secretAccessKey } : undefined;
  }

  key(rel: string): string {
    return this.prefix ? `${this.prefix}/${rel}` : rel;
  }

  where(rel: string): string {
    return `${this.display}/${rel}`;
  }

  private async s3(): Promise<{ mod: S3Module; client: S3Client }> {
    this.sdk ??= (async () => {
      // The SDK warns on stderr about Node < 22 at client creation; a library never prints.
      process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
      const loaded = await import('@aws-sdk/client-s3');
      // Bundled by esbuild, a CommonJS package's exports arrive under `default`.
      const mod: S3Module = 'S3Client' in loaded && loaded.S3Client ? loaded : (loaded as unknown as { default: S3Module }).default;
      const client = new mod.S3Client({
        endpoint: this.endpoint,
        region: this.region,
        credentials: this.credentials,
        forcePathStyle: true,
        // Checksums only where S3 requires them: RGW 16 rejects the newer default trailers.
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
        // Our own loops retry where it matters (refs.json CAS); the SDK's retries cover the rest.
        maxAttempts: 4,
        requestHandler: { connectionTimeout: 10_000, socketTimeout: 120_000 },
      });
      return { mod, client };
    })();
    return this.sdk;
  }

  /** An SDK failure as one line naming the key, never the credentials. */
  private fail(e: unknown, op: string, rel: string): MstoreError {
    if (e instanceof MstoreError) return e;
    const err = (e ?? {}) as S3ErrorLike;
    const status = statusOf(e);
    const what = `${op} ${this.where(rel)}`;
    if (err.name === 'CredentialsProviderError') {
      return new MstoreError('EAUTH', `${what}: no S3 credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)`);
    }
    if (status === 401 || status === 403) return new MstoreError('EAUTH', `${what}: access denied (HTTP ${status}${err.name ? ` ${err.name}` : ''}; check the S3 credentials)`);
    if (err.name === 'NoSuchBucket') return new MstoreError('EREMOTE', `${this.display}: bucket '${this.bucket}' does not exist${this.endpoint ? ` at ${this.endpoint}` : ''}`);
    if (status !== undefined) return new MstoreError('EREMOTE', `${what}: HTTP ${status}${err.name && err.name !== 'UnknownError' ? ` ${err.name}` : ''}`);
    const code = err.code ?? err.name ?? 'error';
    const msg = (err.message ?? '').split('\n')[0];
    return new MstoreError('EREMOTE', `${what}: cannot reach ${this.endpoint ?? 'S3'} (${code}${msg && !msg.includes(code) ? `: ${msg}` : ''})`);
  }

  async getBytes(rel: string, max: number, range?: { offset: number; length: number }, signal?: AbortSignal): Promise<{ data: Buffer; etag: string | null } | undefined> {
    const { mod, client } = await this.s3();
    try {
      const r = await client.send(
        new mod.GetObjectCommand({ Bucket: this.bucket, Key: this.key(rel), Range: range ? `bytes=${range.offset}-${range.offset + range.length - 1}` : undefined }),
        { abortSignal: signal },
      );
      const body = r.Body;
      if (!body) throw new MstoreError('EREMOTE', `GET ${this.where(rel)}: empty response`);
      if (r.ContentLength !== undefined && r.ContentLength > max) {
        // Not read: the connection is dropped with the body.
        (body as unknown as { destroy?: () => void }).destroy?.();
        throw new MstoreError('ECORRUPT', `${this.where(rel)}: ${r.ContentLength} bytes is over the ${max}-byte limit`);
      }
      const u8 = await body.transformToByteArray();
      return { data: Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength), etag: r.ETag ? r.ETag.replace(/"/g, '') : null };
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw this.fail(e, 'GET', rel);
    }
  }

  /** A PUT; a failure keeps its HTTP status (S3Failure). */
  async put(rel: string, body: Buffer, cond?: { ifMatch?: string; ifNoneMatch?: boolean }): Promise<void> {
    const { mod, client } = await this.s3();
    try {
      await client.send(
        new mod.PutObjectCommand({
          Bucket: this.bucket,
          Key: this.key(rel),
          Body: body,
          ContentLength: body.length,
          IfMatch: cond?.ifMatch,
          IfNoneMatch: cond?.ifNoneMatch ? '*' : undefined,
        }),
      );
    } catch (e) {
      throw this.failKeepStatus(e, 'PUT', rel);
    }
  }

  /** Like fail, but keeps the HTTP status reachable for the CAS loop. */
  private failKeepStatus(e: unknown, op: string, rel: string): S3Failure {
    const m: S3Failure = this.fail(e, op, rel);
    m.status = statusOf(e);
    return m;
  }

  async head(rel: string): Promise<number | undefined> {
    const { mod, client } = await this.s3();
    try {
      const r = await client.send(new mod.HeadObjectCommand({ Bucket: this.bucket, Key: this.key(rel) }));
      return r.ContentLength ?? 0;
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw this.fail(e, 'HEAD', rel);
    }
  }

  /** Every key under `rel` (relative to the prefix), page by page. */
  async list(rel: string, limit?: number): Promise<string[]> {
    const { mod, client } = await this.s3();
    const out: string[] = [];
    const base = this.key(rel);
    let token: string | undefined;
    try {
      do {
        const r = await client.send(new mod.ListObjectsV2Command({ Bucket: this.bucket, Prefix: base, ContinuationToken: token, MaxKeys: limit }));
        for (const o of r.Contents ?? []) if (o.Key) out.push(this.prefix ? o.Key.slice(this.prefix.length + 1) : o.Key);
        token = r.IsTruncated && (!limit || out.length < limit) ? r.NextContinuationToken : undefined;
      } while (token);
    } catch (e) {
      throw this.fail(e, 'LIST', rel || '');
    }
    return out;
  }

  async close(): Promise<void> {
    const sdk = this.sdk;
    this.sdk = undefined;
    if (sdk) (await sdk.catch(() => undefined))?.client.destroy();
  }
}

/** Runs `f` over items with at most `n` at a time, results in item order. */
export async function mapLimit<T, R>(items: T[], n: number, f: (t: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await f(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}

/** Sliding window of GETs; yields in request order. */
export async function* slidingWindow<T>(n: number, jobs: ((signal: AbortSignal) => Promise<T>)[]): AsyncGenerator<T> {
  const ac = new AbortController();
  const running: Promise<T>[] = [];
  let next = 0;
  const start = () => {
    const p = jobs[next++](ac.signal);
    p.catch(() => undefined); // awaited below, or dropped on an early exit
    running.push(p);
  };
  try {
    while (next < jobs.length && running.length < n) start();
    while (running.length) {
      const v = await (running.shift() as Promise<T>);
      if (next < jobs.length) start();
      yield v;
    }
  } finally {
    if (running.length) ac.abort();
  }
}
