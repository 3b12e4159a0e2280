/**
 * The Remote interface: what push, pull and clone need from the other side, whatever carries
 * it (another store on a path, `mstore serve` over HTTP, S3-compatible object storage).
 * Like restic's Backend, it is small and knows nothing of versions: refs, "which of these
 * do you lack", objects in, objects out, and an all-or-nothing compare-and-swap of refs.
 * The version logic (what to send, fast-forward rules, verify before refs) lives in
 * push.ts / pull.ts, once for every transport.
 */
import { MstoreError } from '../lib/errors.js';
import type { DeployStatus } from '../repo/deploy-records.js';
import type { BufferPool } from '../lib/buffer-pool.js';

/**
 * What moves between stores (docs/protocol.md §1):
 * - chunk: file content; id = sha256(data), 64 hex.
 * - file:  a file manifest; id = the file's sha256 oid, data = (chunk id 32 | length u32 LE) per chunk.
 * - git:   a git object in loose form `<type> <size>\0<content>`; id = sha1(data), 40 hex.
 * - recipe: content kept as its recipe (docs/format.md §18): id = the content's sha256 oid, data =
 *   the canonical record. It is sent after the manifests of the files it reads, and asked for as
 *   a file: `missing('file')` counts it as held, `fetch('file')` yields it for such content. A
 *   receiver proves it (rebuilds the content and hashes it to the id) before recording it.
 */
export type ObjectKind = 'chunk' | 'file' | 'git' | 'recipe';

export interface WireObject {
  kind: ObjectKind;
  /** Lowercase hex: 64 for chunk and file, 40 for git. */
  id: string;
  data: Buffer;
  /**
   * Set by a sender whose `data` is a reused buffer: the transport calls it once it will
   * never read `data` again (stored, or the request that carried it answered), and the
   * sender may then overwrite it. A transport that never calls it only costs the sender a
   * fresh buffer.
   */
  release?: () => void;
}

/** One ref change in an update: `old` is what the caller last saw (null: must not exist), `new` null deletes. */
export interface RefUpdate {
  ref: string;
  old: string | null;
  new: string | null;
}

export interface SendResult {
  /** Objects the remote stored (it may skip ones it already had). */
  objects: number;
  /** Payload bytes sent (object data, not framing). */
  bytes: number;
}

export interface UpdateRefsOptions {
  /** Skip the fast-forward rules (never the compare-and-swap against `old`). */
  force?: boolean;
  /** Lines of the remote's post-receive hook output, as they arrive. */
  onRemoteOutput?: (line: string) => void;
  /** Recorded in the remote's ref history. */
  message?: string;
}

export interface Remote {
  /** For messages: the URL without credentials. */
  readonly display: string;
  /** Every ref (full name -> 40-hex value), notes included. */
  listRefs(): Promise<Map<string, string>>;
  /** The subset of `ids` the remote does not have (any order). Callers batch; a remote may split further. */
  missing(kind: ObjectKind, ids: string[]): Promise<string[]>;
  /**
   * True when the remote re-hashes every object it receives and rejects a mismatch (a store:
   * path and HTTP). The sender (push.ts) then sends chunks as read, unhashed: the receiver's
   * check is the one that counts. Dumb storage (S3) checks nothing, so push re-hashes first.
   */
  readonly verifiesReceived: boolean;
  /** True when send() calls each object's `release` (push then reads chunks into reused buffers). */
  readonly releasesSent: boolean;
  /** Where a server decodes uploads for send(): buffers send() hands back when done with them. */
  readonly pool?: BufferPool;
  /**
   * Stores objects. Chunks come before the manifests that list them; git objects after
   * what they point at. What arrived complete before an interruption stays stored (a rerun
   * sends only the rest).
   */
  send(objects: AsyncIterable<WireObject>, onBytes?: (n: number) => void): Promise<SendResult>;
  /**
   * The objects asked for, in any order, each exactly once; an id the remote lacks is an
   * error. The consumer (pull.ts) re-hashes every object it receives (wire.checkObject),
   * so a transport need not hash what it yields.
   */
  fetch(kind: ObjectKind, ids: string[], opts?: FetchOptions): AsyncIterable<WireObject>;
  /**
   * Applies every update or none: each ref must still have its `old` value (else a
   * non-fast-forward error naming it), and without `force` heads may only move forward and
   * tags may only be created. The remote must hold everything the new values reach.
   */
  updateRefs(updates: RefUpdate[], opts?: UpdateRefsOptions): Promise<void>;
  /** The remote's deploy state (docs/deploy.md); only stores that run hooks (path, HTTP) have one. */
  deployStatus?(): Promise<DeployStatus>;
  close(): Promise<void>;
}

export interface FetchOptions {
  /** Chunk data goes into buffers from this pool where the transport can (the consumer hands them back). */
  pool?: BufferPool;
}

/** Ids per `missing` / `fetch` round trip. */
export const BATCH_IDS = 4096;

/** A ref update refused because the remote moved on (or would not fast-forward). Exit 1. */
export function nonFastForward(ref: string, why: string): MstoreError {
  return new MstoreError('EREJECTED', `rejected ${ref} (non-fast-forward): ${why}; pull first, or push --force`);
}

const HEX = { chunk: 64, file: 64, git: 40, recipe: 64 } as const;

export function checkObjectId(kind: ObjectKind, id: string): void {
  if (id.length !== HEX[kind] || !/^[0-9a-f]+$/.test(id)) throw new MstoreError('EBADINPUT', `bad ${kind} id '${id.slice(0, 80)}'`);
}

/**
 * Ref names a remote accepts: the one rule of repo/ref-names.ts (git's check-ref-format, parts
 * of at most 255 bytes, no name that shadows another namespace), at every transport's door.
 */
export { checkRefName } from '../repo/ref-names.js';

export function checkOid(value: string, what: string): void {
  if (!/^[0-9a-f]{40}$/.test(value)) throw new MstoreError('EBADINPUT', `${what}: '${value.slice(0, 80)}' is not a 40-hex object id`);
}
