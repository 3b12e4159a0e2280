/**
 * What `mstore serve` bounds for every client, token holders included (docs/protocol.md §2.4):
 * canonical request paths, the size of id requests, heavy requests at once per token and in
 * all, bytes per fetch answer, and the one place where server paths are taken out of error
 * messages. Bookkeeping only: no I/O, no printing; refusals are HttpErrors whose status the
 * server sends as is.
 */
import { MstoreError, type ErrorCode } from '../../lib/errors.js';

/** Largest body of a `missing` or `fetch` request: 4,096 ids of 64 hex are ~280 KB of JSON. */
export const MAX_IDS_BODY = 512 * 1024;
/** Heavy requests (missing, fetch, object uploads) one token may have in flight; beyond: 429. */
export const HEAVY_PER_TOKEN = 4;
/** Heavy requests in flight in all; beyond: 503. */
export const HEAVY_TOTAL = 8;
/** Default payload bytes of one fetch answer; the client asks again for the rest. */
export const DEFAULT_MAX_FETCH_BYTES = 256 * 1024 * 1024;
/** Bytes all fetch answers together may have read ahead of their sockets (16 MiB each at 8 at once). */
export const FETCH_AHEAD_TOTAL = 128 * 1024 * 1024;
/** Seconds a refused client is told to wait (Retry-After). */
export const RETRY_AFTER_S = 1;

/** An error whose HTTP status is decided by the server (auth, limits, routing), not by its code. */
export class HttpError extends MstoreError {
  constructor(
    readonly status: number,
    code: ErrorCode,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(code, message);
  }
}

/** A path segment as the routes spell them: no empty, `.` or `..` segment, no `%`, `\` or other escapes. */
const CANONICAL = /^(?:(?:\/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+|\/)$/;

/**
 * The path of a request target, or a 400 when it is not in canonical origin form: a proxy
 * that allows or blocks by path must see exactly the path that is routed (`//x/v1/refs`,
 * `/v1\refs`, `/v1/./refs`, `/v1/%72efs` and `http://host/v1/refs` are all refused, never
 * normalised). The query string is ignored.
 */
export function canonicalPath(target: string | undefined): string {
  const t = target ?? '';
  const q = t.indexOf('?');
  const p = q < 0 ? t : t.slice(0, q);
  if (!CANONICAL.test(p) || p.length > 1024) {
    throw new HttpError(400, 'EBADINPUT', "the request path is not canonical (segments of letters, digits, '.', '_', '-', '~' after single slashes; no '.', '..', '%', '\\' or host)");
  }
  return p;
}

/**
 * Counts heavy requests per key (a token's digest) and in all. `take` returns the release
 * function, or throws 429 (this key is at its limit) or 503 (the server is).
 */
export class Slots {
  private readonly byKey = new Map<string, number>();
  private total = 0;

  constructor(
    private readonly perKey = HEAVY_PER_TOKEN,
    private readonly all = HEAVY_TOTAL,
  ) {}

  take(key: string): () => void {
    const mine = this.byKey.get(key) ?? 0;
    const retry = { 'retry-after': String(RETRY_AFTER_S) };
    if (mine >= this.perKey) throw new HttpError(429, 'EREMOTE', `too many requests at once for this token (at most ${this.perKey} missing/fetch/upload requests); retry later`, retry);
    if (this.total >= this.all) throw new HttpError(503, 'EREMOTE', `too many requests at once (at most ${this.all} missing/fetch/upload requests in all); retry later`, retry);
    this.byKey.set(key, mine + 1);
    this.total++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.total--;
      const n = (this.byKey.get(key) ?? 1) - 1;
      if (n > 0) this.byKey.set(key, n);
      else this.byKey.delete(key);
    };
  }
}

/** An absolute path of two or more segments, after a start, a space, a quote or punctuation. */
const ABSOLUTE = /(^|[\s'"(=:,[])\/(?:[^\s'"(),;:\]]+\/)+[^\s'"(),;:\]]*/g;

/**
 * The one redaction point of error messages sent to clients: each of `roots` (the store's
 * directory, spelled as given and resolved) becomes `<store>`, any other absolute path
 * `<path>`. Messages should name objects and versions at their source; this catches what a
 * lower layer (a file system error, say) still says.
 */
export function redactPaths(message: string, roots: string[]): string {
  let out = message;
  for (const r of [...new Set(roots)].filter((x) => x.length > 1).sort((a, b) => b.length - a.length)) out = out.split(r).join('<store>');
  return out.replace(ABSOLUTE, '$1<path>');
}
