/**
 * `commit`: snapshot the workspace (or some paths of it) as the next version of a line. A
 * file whose name a version cannot hold (format/path-names.ts) refuses the commit before
 * anything is written.
 * Publish order: pack data fsynced -> index -> git objects -> tag ref -> line ref ->
 * stat cache. A crash at any point leaves every ref on complete data. Every file is read as
 * one snapshot (src/lib/stable-read.ts); a stat-cache entry is used only while it names what
 * the store holds, and a racy one is neither used nor recorded; a tree that would name an
 * absent object is refused before anything is written (version-write.ts assertTreePresent).
 */
import { MstoreError } from '../lib/errors.js';
import type { Store } from '../repo/store.js';
import { ContentWriter } from '../repo/content.js';
import type { StatEntry } from '../repo/index-db.js';
import type { FlatTree } from '../repo/git.js';
import { cachedIdentity, identifyFile } from '../repo/identify.js';
import { cacheable, gitMode, nowNs, scanWorkspace, statEntry, sweepTemps, toWorkspacePaths, underAny } from '../repo/workspace.js';
import { DEFAULT_LINE, STATUSES, checkLineName, inVersionOf, lineRef, readMeta, refCollision } from '../repo/versions.js';
import { pathProblem, showName } from '../format/path-names.js';
import { modelEntries } from '../repo/version-files.js';
import { assertTreePresent, defaultAuthor, writeVersion } from '../repo/version-write.js';
import type { Progress } from '../lib/progress.js';

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



export async function commit(store: Store, opts: CommitOptions): Promise<CommitResult> {
  const root = store.requireWorkspace('commit');
  const line = opts.line ?? DEFAULT_LINE;
  checkLineName(line);
  if (opts.status !== undefined && !(STATUSES as readonly string[]).includes(opts.status)) {
    throw new MstoreError('EUSAGE', `invalid status '${opts.status}' (one of ${STATUSES.join(', ')})`);
  }
  if (!opts.message.trim()) throw new MstoreError('EUSAGE', 'empty commit message');
  return store.withLock('commit', async () => {
    const repo = store.repo;
    const index = store.index;
    const prefixes = opts.paths?.length ? toWorkspacePaths(root, opts.cwd, opts.paths) : undefined;
    const head = await repo.readRef(lineRef(line));
    if (!head && line !== DEFAULT_LINE) {
      const clash = (await refCollision(repo, `refs/tags/${line}/v001`)) ?? (await refCollision(repo, lineRef(line)));
      if (clash) throw new MstoreError('EBADNAME', `line '${line}' collides with the existing ref ${clash}`);
    }
    // Entries of the head that a version cannot hold (a tree made by another tool) are not carried.
    const headTree = head ? await inVersionOf(repo, head, async () => repo.readFlatTreeChecked((await repo.readCommit(head)).tree)) : { flat: new Map(), bad: [] };
    const headFlat: FlatTree = modelEntries(headTree.flat);

    const scanAt = nowNs();
    const { files, skipped, temps } = await scanWorkspace(root, prefixes);
    // Names a version cannot hold (docs/format.md §7.9) are refused before anything is written.
    for (const f of files) {
      const problem = pathProblem(f.path, { symlink: f.isLink });
      if (problem) throw new MstoreError('EBADINPUT', `cannot commit ${showName(f.path)}: ${problem}`, { what: f.path });
    }
    await sweepTemps(root, temps);
    const warnings = skipped.map((p) => `skipped ${p}: not a regular file or symlink`);
    for (const b of headTree.bad) warnings.push(`not carried from the line's head: ${showName(b.path)} (${b.problem})`);
    const flat: FlatTree = new Map();
    if (prefixes) for (const [p, e] of headFlat) if (!underAny(p, prefixes)) flat.set(p, e);

    const statUpdates = new Map<string, StatEntry | null>();
    const gitBlobs = new Map<string, Buffer>();
    const sizes = new Map<string, number>();
    // A cache entry is used only while it names what the store holds; else the file is hashed.
    const todo: typeof files = [];
    for (const f of files) {
      const hit = await cachedIdentity(repo, index, index.stat(f.path), f.stat);
      if (!hit) {
        todo.push(f);
        continue;
      }
      flat.set(f.path, { mode: gitMode(f), blob: hit.blob });
      sizes.set(f.path, hit.size);
      if (hit.gitContent) gitBlobs.set(hit.blob, hit.gitContent);
    }
    // Files kept from the head outside the committed paths: sized from their blobs, which must be there.
    const kept: FlatTree = new Map([...flat].filter(([p]) => !sizes.has(p)));
    for (const [p, n] of await assertTreePresent(store, kept, gitBlobs)) sizes.set(p, n);
    const total = todo.reduce((a, f) => a + f.stat.size, 0);
    let done = 0;
    const onBytes = (n: number): void => {
      done += n;
      opts.onProgress?.({ phase: 'store', done, total });
    };
    const writer = new ContentWriter(store.sink(), store.hasher, store.config.chunking);
    try {
      for (const f of todo) {
        const id = await identifyFile(repo, f, store.config.textMaxBytes, writer, onBytes);
        if (id.warning) warnings.push(id.warning);
        flat.set(f.path, { mode: gitMode(f), blob: id.blob });
        sizes.set(f.path, id.size);
        gitBlobs.set(id.blob, id.gitContent);
        // The stat the bytes were read under, unless it is racy (then hashed again next time).
        statUpdates.set(f.path, cacheable(id.stat, scanAt) ? statEntry(id.stat, id.kind, id.oid, id.blob, scanAt) : null);
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
    for (const p of flat.keys()) totalBytes += sizes.get(p) ?? 0;
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
    // 2. git objects (blobs, metadata, tree, commit, tag), then the refs through the ref history.
    const { version, commit: commitId } = await writeVersion(store, {
      line, flat, gitBlobs, totalBytes, message: opts.message, params: opts.params, metrics: opts.metrics,
      trainingData: opts.trainingData, status: opts.status ?? null, meta: opts.meta, author: opts.author ?? defaultAuthor(), reason: 'commit',
      // Every path was proven present above: a cache hit, a file kept from the head, or just stored.
      present: new Set(sizes.keys()),
    });
    // 4. the stat cache, last: it may only name content that versions hold. The version is
    // published: a full disk now costs the cache (files are hashed again next time), not the commit.
    try {
      index.updateStats(statUpdates);
    } catch (e) {
      if (!(e instanceof MstoreError) || e.code !== 'ESTORAGE') throw e;
      warnings.push(`the stat cache was not updated: ${e.message.replace(/; nothing was published$/, '')}`);
    }
    return {
      changed: true, version, commit: commitId, line, files: flat.size, totalBytes,
      newBytes: writer.newBytes, added, modified, deleted, warnings,
    };
  });
}
