/**
 * Writing a version record once its content is in packs and indexed: the git blobs, the
 * metadata record, the tree, the commit, the annotated version tag, then the refs (version
 * tag, never overwritten; then the line head), through the ref history. Used by commit,
 * import of plain directories and consolidate.
 *
 * Rule it keeps: a version never names what the store lacks. Before anything is written,
 * every blob the tree names is about to be written or is in the git repository, and every
 * git-lfs pointer's content is in the index (a presence check, not a re-hash); else nothing
 * is written and EMISSING names the path and the object.
 */
import os from 'node:os';
import type { Store } from './store.js';
import type { FlatTree, Signature } from './git.js';
import { now as clockNow } from '../lib/clock.js';
import { MstoreError } from '../lib/errors.js';
import { parsePointer } from '../format/pointer.js';
import { moveRefs, readRefLog, type RefLogEntry, type RefReason } from './reflog.js';
import { META_PATH, META_SCHEMA, lineRef, nextVersionNumber, readMeta, versionName, type VersionMeta } from './versions.js';

/** Who a version, tag or label is by when no one is named: MSTORE_AUTHOR_NAME/EMAIL, else the OS user at this host. */
export function defaultAuthor(): { name: string; email: string } {
  const name = process.env.MSTORE_AUTHOR_NAME ?? os.userInfo().username;
  const email = process.env.MSTORE_AUTHOR_EMAIL ?? `${os.userInfo().username}@${os.hostname()}`;
  return { name, email };
}

export interface NewVersion {
  line: string;
  /** The model files (no metadata record), blob ids already known. */
  flat: FlatTree;
  /** Bytes of git blobs that may not be in the repository yet (text files, pointers, links). */
  gitBlobs: Map<string, Buffer>;
  totalBytes: number;
  message: string;
  /** Parent commits; default: the line's head (if any). */
  parents?: string[];
  params?: Record<string, unknown>;
  metrics?: Record<string, unknown>;
  trainingData?: string[];
  status?: string | null;
  meta?: Record<string, unknown>;
  author: { name: string; email: string };
  reason: RefReason;
  refMessage?: string;
  /**
   * Paths whose objects the caller proved present under the same lock (commit: stat-cache hits,
   * files kept from the head, files just stored): not read again. Reading every blob of the new
   * version again grew with the history: building 1,000 versions took 55 s with it, 45 s without.
   */
  present?: ReadonlySet<string>;
}

export interface WrittenVersion {
  version: string;
  commit: string;
  number: number;
  entries: RefLogEntry[];
}

/**
 * Throws EMISSING unless every object `flat` names is present: its blob in `gitBlobs` or the
 * git repository, and for a git-lfs pointer (read from either) the content in the index.
 * Returns each path's file size (a pointer's size field, else the blob's length); paths in
 * `present` are taken as checked and left out.
 */
export async function assertTreePresent(store: Store, flat: FlatTree, gitBlobs: Map<string, Buffer>, present?: ReadonlySet<string>): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  const sizes = new Map<string, number>();
  for (const [p, e] of flat) {
    if (present?.has(p)) continue;
    const known = seen.get(e.blob);
    if (known !== undefined) {
      sizes.set(p, known);
      continue;
    }
    let data: Uint8Array | undefined = gitBlobs.get(e.blob);
    if (!data) {
      try {
        data = await store.repo.readBlob(e.blob);
      } catch (err) {
        const missing = (err as { code?: string }).code === 'NotFoundError';
        throw new MstoreError('EMISSING', `${p}: git blob ${e.blob} is ${missing ? 'missing from' : 'unreadable in'} the store; no version was written (run mstore fsck)`, { what: p });
      }
    }
    const pointer = e.mode === '120000' ? undefined : parsePointer(data);
    if (pointer && !store.index.hasContent(Buffer.from(pointer.oid, 'hex'))) {
      throw new MstoreError('EMISSING', `${p}: content ${pointer.oid} is missing from the store; no version was written (run mstore fsck)`, { what: p });
    }
    const size = pointer ? pointer.size : data.length;
    seen.set(e.blob, size);
    sizes.set(p, size);
  }
  return sizes;
}

/** Caller holds the lock and has already published the content (packs and index). */
export async function writeVersion(store: Store, v: NewVersion): Promise<WrittenVersion> {
  const repo = store.repo;
  await assertTreePresent(store, v.flat, v.gitBlobs, v.present);
  for (const [blob, data] of v.gitBlobs) {
    const written = await repo.writeBlob(data);
    if (written !== blob) throw new Error(`internal: blob id ${written} != ${blob}`);
  }
  const head = await repo.readRef(lineRef(v.line));
  const parents = v.parents ?? (head ? [head] : []);
  const parentVersions: string[] = [];
  for (const p of parents) {
    const m = await readMeta(repo, p);
    if (m?.version) parentVersions.push(m.version);
  }
  // Numbers are never reused: a removed version's number stays taken (its tag is in the ref history).
  const number = await nextVersionNumber(repo, v.line, await readRefLog(store));
  const version = versionName(v.line, number);
  const now = clockNow();
  const meta: VersionMeta = {
    schema: META_SCHEMA,
    version,
    line: v.line,
    number,
    description: v.message,
    created: now.toISOString(),
    author: v.author,
    host: os.hostname(),
    params: v.params ?? {},
    metrics: v.metrics ?? {},
    training_data: v.trainingData ?? [],
    status: v.status ?? null,
    lineage: { parents, parent_versions: parentVersions },
    meta: v.meta ?? {},
    files: { count: v.flat.size, bytes: v.totalBytes },
  };
  const flat: FlatTree = new Map(v.flat);
  flat.set(META_PATH, { mode: '100644', blob: await repo.writeBlob(Buffer.from(`${JSON.stringify(meta, null, 2)}\n`)) });
  const tree = await repo.writeFlatTree(flat);
  const sig: Signature = { name: v.author.name, email: v.author.email, timestamp: Math.floor(now.getTime() / 1000), timezoneOffset: now.getTimezoneOffset() };
  const message = v.message.trim();
  const commit = await repo.writeCommit({ message: `${message}\n`, tree, parents, author: sig });
  const tagId = await repo.writeAnnotatedTag({ name: version, object: commit, message: `${version}: ${message}\n`, tagger: sig });
  const entries = await moveRefs(store, [{ ref: `refs/tags/${version}`, value: tagId, create: true }, { ref: lineRef(v.line), value: commit }], v.reason, {
    message: v.refMessage ?? message.split('\n')[0],
  });
  return { version, commit, number, entries };
}
