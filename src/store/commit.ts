/**
 * `commit`: snapshot the workspace (or some paths of it) as the next version of a line.
 * Publish order: pack data fsynced -> index -> git objects -> tag ref -> line ref ->
 * stat cache. A crash at any point leaves every ref on complete data.
 */
import os from 'node:os';
import { MstoreError } from './errors.js';
import type { Store } from './store.js';
import { ContentWriter } from './content.js';
import type { StatEntry } from './index-db.js';
import type { FlatTree, Signature } from './repo.js';
import { identifyFile } from './identify.js';
import { gitMode, nowNs, scanWorkspace, statEntry, statMatches, sweepTemps, toWorkspacePaths, underAny } from './workspace.js';
import {
  DEFAULT_LINE, META_PATH, META_SCHEMA, STATUSES, checkLineName, nextVersionNumber, lineRef, readMeta, refCollision, versionName,
  type VersionMeta,
} from './versions.js';
import { describeEntry, modelEntries } from './version-files.js';
import { now as clockNow } from './clock.js';
import { moveRefs, readRefLog } from './reflog.js';

export interface Progress {
  phase: 'scan' | 'store' | 'checkout';
  done: number;
  total: number;
  file?: string;
}

export interface CommitOptions {
  cwd: string;
  message: string;
  paths?: string[];
  line?: string;
  meta?: Record<string, unknown>;
  params?: Record<string, unknown>;
  metrics?: Record<string, unknown>;
  trainingData?: string[];
  status?: string;
  allowEmpty?: boolean;
  author?: { name: string; email: string };
  onProgress?: (p: Progress) => void;
}

export interface CommitResult {
  changed: boolean;
  /** The new version, or the current one when nothing changed. */
  version: string | undefined;
  commit: string | undefined;
  line: string;
  files: number;
  totalBytes: number;
  newBytes: number;
  added: string[];
  modified: string[];
  deleted: string[];
  warnings: string[];
}


export function defaultAuthor(): { name: string; email: string } {
  const name = process.env.MSTORE_AUTHOR_NAME ?? os.userInfo().username;
  const email = process.env.MSTORE_AUTHOR_EMAIL ?? `${os.userInfo().username}@${os.hostname()}`;
  return { name, email };
}

export async function commit(store: Store, opts: CommitOptions): Promise<CommitResult> {
  const root = store.requireWorkspace('commit');
  const line = opts.line ?? DEFAULT_LINE;
  checkLineName(line);
  if (opts.status !== undefined && !(STATUSES as readonly string[]).includes(opts.status)) {
    throw new MstoreError('EBADINPUT', `invalid status '${opts.status}' (one of ${STATUSES.join(', ')})`, 2);
  }
  if (!opts.message.trim()) throw new MstoreError('EBADINPUT', 'empty commit message', 2);
  return store.withLock('commit', async () => {
    const repo = store.repo;
    const index = store.index;
    const prefixes = opts.paths?.length ? toWorkspacePaths(root, opts.cwd, opts.paths) : undefined;
    const head = await repo.readRef(lineRef(line));
    if (!head && line !== DEFAULT_LINE) {
      const clash = (await refCollision(repo, `refs/tags/${line}/v001`)) ?? (await refCollision(repo, lineRef(line)));
      if (clash) throw new MstoreError('EBADNAME', `line '${line}' collides with the existing ref ${clash}`, 2);
    }
    const headFlat: FlatTree = head ? modelEntries(await repo.readFlatTree((await repo.readCommit(head)).tree)) : new Map();

    const scanAt = nowNs();
    const { files, skipped, temps } = await scanWorkspace(root, prefixes);
    await sweepTemps(root, temps);
    const warnings = skipped.map((p) => `skipped ${p}: not a regular file or symlink`);
    const flat: FlatTree = new Map();
    if (prefixes) for (const [p, e] of headFlat) if (!underAny(p, prefixes)) flat.set(p, e);

    const statUpdates = new Map<string, StatEntry | null>();
    const gitBlobs = new Map<string, Buffer>();
    const sizes = new Map<string, number>();
    const todo = files.filter((f) => {
      const e = index.stat(f.path);
      if (e && statMatches(e, f.stat) && (e.kind !== 'lfs' || index.hasFile(Buffer.from(e.oid, 'hex')))) {
        flat.set(f.path, { mode: gitMode(f), blob: e.blob });
        sizes.set(f.path, e.size);
        return false;
      }
      return true;
    });
    const total = todo.reduce((a, f) => a + f.stat.size, 0);
    let done = 0;
    const onBytes = (n: number): void => {
      done += n;
      opts.onProgress?.({ phase: 'store', done, total });
    };
    const writer = new ContentWriter(index, store.hasher, store.config.chunking, store.tmpDir, store.packsDir);
    try {
      for (const f of todo) {
        const id = await identifyFile(repo, f, store.config.textMaxBytes, writer, onBytes);
        if (id.warning) warnings.push(id.warning);
        flat.set(f.path, { mode: gitMode(f), blob: id.blob });
        sizes.set(f.path, id.size);
        gitBlobs.set(id.blob, id.gitContent);
        statUpdates.set(f.path, statEntry(f.stat, id.kind, id.oid, id.blob, scanAt));
      }
    } catch (e) {
      await writer.abort();
      throw e;
    }

    const added: string[] = [];
    const modified: string[] = [];
    const deleted: string[] = [];
    for (const [p, e] of flat) {
      const old = headFlat.get(p);
      if (!old) added.push(p);
      else if (old.blob !== e.blob || old.mode !== e.mode) modified.push(p);
    }
    for (const p of headFlat.keys()) if (!flat.has(p)) deleted.push(p);
    const changed = added.length + modified.length + deleted.length > 0;
    // Paths gone from the workspace (deleted, or now ignored) are no longer tracked.
    const scanned = new Set(files.map((f) => f.path));
    for (const p of index.statPaths()) {
      if (!scanned.has(p) && (!prefixes || underAny(p, prefixes))) statUpdates.set(p, null);
    }

    let totalBytes = 0;
    for (const [p, e] of flat) {
      totalBytes += sizes.get(p) ?? (await describeEntry(repo, p, e.mode, e.blob)).size;
    }
    const headMeta = head ? await readMeta(repo, head) : undefined;

    if (!changed && !opts.allowEmpty) {
      await writer.finish(statUpdates);
      return {
        changed: false, version: headMeta?.version, commit: head, line, files: flat.size, totalBytes,
        newBytes: 0, added, modified, deleted, warnings,
      };
    }

    // 1. chunk data fsynced in packs, then the index, in one transaction.
    await writer.finish();
    // 2. git objects: blobs, metadata, trees, commit, tag.
    for (const [blob, data] of gitBlobs) {
      const written = await repo.writeBlob(data);
      if (written !== blob) throw new Error(`internal: blob id ${written} != ${blob}`);
    }
    // Numbers are never reused: a removed version's number stays taken (its tag is in the ref history).
    const number = await nextVersionNumber(repo, line, await readRefLog(store));
    const version = versionName(line, number);
    const author = opts.author ?? defaultAuthor();
    const now = clockNow();
    const meta: VersionMeta = {
      schema: META_SCHEMA,
      version,
      line,
      number,
      description: opts.message,
      created: now.toISOString(),
      author,
      host: os.hostname(),
      params: opts.params ?? {},
      metrics: opts.metrics ?? {},
      training_data: opts.trainingData ?? [],
      status: opts.status ?? null,
      lineage: { parents: head ? [head] : [], parent_versions: headMeta ? [headMeta.version] : [] },
      meta: opts.meta ?? {},
      files: { count: flat.size, bytes: totalBytes },
    };
    const metaBlob = await repo.writeBlob(Buffer.from(`${JSON.stringify(meta, null, 2)}\n`));
    flat.set(META_PATH, { mode: '100644', blob: metaBlob });
    const tree = await repo.writeFlatTree(flat);
    const sig: Signature = {
      name: author.name,
      email: author.email,
      timestamp: Math.floor(now.getTime() / 1000),
      timezoneOffset: now.getTimezoneOffset(),
    };
    const commitId = await repo.writeCommit({ message: `${opts.message.trim()}\n`, tree, parents: head ? [head] : [], author: sig });
    const tagId = await repo.writeAnnotatedTag({ name: version, object: commitId, message: `${version}: ${opts.message.trim()}\n`, tagger: sig });
    // 3. refs, recorded in the ref history first: the version tag (never overwritten), then the line.
    await moveRefs(store, [{ ref: `refs/tags/${version}`, value: tagId, create: true }, { ref: lineRef(line), value: commitId }], 'commit', {
      message: opts.message.trim().split('\n')[0],
    });
    // 4. the stat cache, last: it may only name content that versions hold.
    index.updateStats(statUpdates);
    return {
      changed: true, version, commit: commitId, line, files: flat.size - 1, totalBytes,
      newBytes: writer.newBytes, added, modified, deleted, warnings,
    };
  });
}
