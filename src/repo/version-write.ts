/**
 * Writing a version record once its content is in packs and indexed: the git blobs, the
 * metadata record, the tree, the commit, the annotated version tag, then the refs (version
 * tag, never overwritten; then the line head), through the ref history. Used by commit,
 * import of plain directories and consolidate.
 */
import os from 'node:os';
import type { Store } from './store.js';
import type { FlatTree, Signature } from './git.js';
import { now as clockNow } from '../lib/clock.js';
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
}

export interface WrittenVersion {
  version: string;
  commit: string;
  number: number;
  entries: RefLogEntry[];
}

/** Caller holds the lock and has already published the content (packs and index). */
export async function writeVersion(store: Store, v: NewVersion): Promise<WrittenVersion> {
  const repo = store.repo;
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
