/**
 * The two-phase write of a checkout (docs/format.md §10.3). Phase 1 writes every file of the
 * plan to a temporary name (fsutil's tmpName) in its own directory — verified, fsynced — while
 * no file of the destination changes. Phase 2 runs only when all of them are there: what goes
 * away is set aside under a temporary name, each replaced file keeps a second name (a hard
 * link), and the temporaries are renamed into place; each step is recorded, so a failure puts
 * back what was there. A failed checkout leaves the destination as it was (one version or the
 * other, never a mix); a killed one leaves only temporary names, which the next checkout or
 * commit sweeps (workspace.ts sweepTemps).
 */
import { link, lstat, mkdir, rename as renameBack, rm, rmdir, symlink, unlink } from 'node:fs/promises';
import path from 'node:path';
import { MstoreError, storageError } from '../lib/errors.js';
import { fsyncDir, rename, tmpName, writeTempFile } from '../lib/fsutil.js';
import type { GitRepo } from '../repo/git.js';
import type { ContentReader } from '../repo/content-reader.js';
import type { VersionFile } from '../repo/version-files.js';

export interface WritePlan {
  /** The destination root (absolute). */
  target: string;
  /** Files of the version to write, with their absolute destinations. */
  writes: { f: VersionFile; dest: string }[];
  /** Tracked files (relative to target) the version lacks. */
  removals: string[];
  /** Directories (relative) holding only removals, where a file of the version goes. */
  emptiedDirs: string[];
  /** Files or symlinks (relative) where the version needs a directory. */
  clearFirst: string[];
}

interface Staged {
  f: VersionFile;
  dest: string;
  tmp: string;
}

const codeOf = (e: unknown): string => (e as NodeJS.ErrnoException).code ?? String(e);

/**
 * The directory to stage `rel` in: its parent, created (and recorded in `created`) where
 * missing; or, when a parent is a path in `away` (a file that goes before the directory can
 * exist), the directory above that path. A parent that is a symlink or a file not planned
 * away is never written through.
 */
async function stagingDir(target: string, rel: string, away: Set<string>, created: string[]): Promise<string> {
  const parts = rel.split('/');
  let dir = target;
  for (let i = 0; i < parts.length - 1; i++) {
    const p = parts.slice(0, i + 1).join('/');
    if (away.has(p)) return dir;
    const abs = path.join(dir, parts[i]);
    const st = await lstat(abs).catch(() => undefined);
    if (!st) {
      await mkdir(abs).catch((e: unknown) => {
        throw new MstoreError('ECONFLICT', `cannot create the directory for ${rel}: ${codeOf(e)}`, { what: rel });
      });
      created.push(abs);
    } else if (st.isSymbolicLink() || !st.isDirectory()) {
      throw new MstoreError('ECORRUPT', `refusing to write ${rel}: ${p} is a ${st.isSymbolicLink() ? 'symlink' : 'file'}`, { what: rel });
    }
    dir = abs;
  }
  return dir;
}

/** mkdir -p `dir`, recording each directory it creates in `created` (outermost first). */
async function mkdirRecorded(dir: string, created: string[]): Promise<void> {
  const first = await mkdir(dir, { recursive: true });
  if (!first) return;
  const chain: string[] = [];
  for (let d = dir; d.length >= first.length; d = path.dirname(d)) chain.unshift(d);
  created.push(...chain);
}

/** rmdir the directories this checkout created, deepest (latest) first; non-empty ones stay. */
async function removeCreated(created: string[]): Promise<void> {
  for (const d of [...created].reverse()) await rmdir(d).catch(() => undefined);
}

/** After removals, drop the directories they left empty, up to (not including) the root. */
async function pruneEmptyDirs(root: string, removed: string[]): Promise<void> {
  for (const p of removed) {
    let d = path.dirname(p);
    while (d !== '.' && d !== '') {
      try {
        await rmdir(path.join(root, d));
      } catch {
        break; // not empty (or gone): stop climbing
      }
      d = path.dirname(d);
    }
  }
}

/** Phase 1: every file of the plan under a temporary name. On an error none is left. */
async function stageAll(plan: WritePlan, repo: GitRepo, reader: ContentReader, onBytes: (n: number) => void, created: string[]): Promise<Staged[]> {
  const away = new Set(plan.clearFirst);
  const staged: Staged[] = [];
  try {
    if (plan.writes.length) {
      await mkdirRecorded(plan.target, created).catch((e: unknown) => {
        throw new MstoreError('ECONFLICT', `cannot create ${plan.target}: ${codeOf(e)}`, { what: plan.target });
      });
    }
    for (const { f, dest } of plan.writes) {
      const tmp = tmpName(dest, await stagingDir(plan.target, f.path, away, created));
      const mode = f.mode === '100755' ? 0o755 : 0o644;
      if (f.kind === 'lfs') {
        await reader.materializeTemp(f.oid, tmp, f.path, mode, onBytes);
      } else if (f.kind === 'link') {
        await symlink(Buffer.from(await repo.readBlob(f.blob)).toString(), tmp);
      } else {
        await writeTempFile(tmp, await repo.readBlob(f.blob), { mode, exactMode: true });
        onBytes(f.size);
      }
      staged.push({ f, dest, tmp });
    }
    return staged;
  } catch (e) {
    for (const s of staged) await unlink(s.tmp).catch(() => undefined);
    await removeCreated(created);
    throw e;
  }
}

/**
 * Writes the plan: removals, emptied directories, paths in the way, and every file, all or
 * nothing (see the file comment). Directories touched are fsynced before it returns.
 */
export async function writeCheckout(plan: WritePlan, repo: GitRepo, reader: ContentReader, onBytes: (n: number) => void): Promise<void> {
  const { target } = plan;
  const created: string[] = [];
  const staged = await stageAll(plan, repo, reader, onBytes, created);

  // Phase 2. `undo` puts back each step done; `asides` are the old contents' temporary names.
  const undo: (() => Promise<unknown>)[] = [];
  const asides: string[] = [];
  const dirs = new Set<string>([target]);
  let renamed = 0;
  let current = target;
  try {
    const emptied = plan.emptiedDirs;
    const goAway = new Set([...emptied, ...plan.clearFirst, ...plan.removals.filter((p) => !emptied.some((d) => p.startsWith(`${d}/`)))]);
    for (const rel of goAway) {
      const abs = path.join(target, rel);
      current = rel;
      const bak = tmpName(abs);
      try {
        await rename(abs, bak);
      } catch (e) {
        if (codeOf(e) === 'ENOENT') continue; // already gone
        throw e;
      }
      asides.push(bak);
      undo.push(() => renameBack(bak, abs));
      dirs.add(path.dirname(abs));
    }
    for (const s of staged) {
      const dir = path.dirname(s.dest);
      current = s.f.path;
      if (path.dirname(s.tmp) !== dir) {
        // Staged above a path that was in the way (now set aside): the directory comes now.
        await mkdirRecorded(dir, created);
      }
      const cur = await lstat(s.dest).catch(() => undefined);
      if (cur && !cur.isDirectory()) {
        // The replaced file keeps a second name until the checkout is complete.
        const bak = tmpName(s.dest);
        await link(s.dest, bak).catch(() => rename(s.dest, bak));
        asides.push(bak);
        const dest = s.dest;
        // (a rename between two names of one file does nothing: then the second name goes)
        undo.push(() => renameBack(bak, dest).then(() => unlink(bak).catch(() => undefined)));
      } else {
        const dest = s.dest;
        undo.push(() => unlink(dest));
      }
      await rename(s.tmp, s.dest);
      renamed++;
      dirs.add(dir);
    }
  } catch (e) {
    for (const u of undo.reverse()) await u().catch(() => undefined);
    for (const s of staged.slice(renamed)) await unlink(s.tmp).catch(() => undefined);
    await removeCreated(created);
    if (e instanceof MstoreError) throw e;
    const storage = storageError(e, path.join(target, current), `putting ${current} in place at`, { nameGiven: true });
    if (storage) throw new MstoreError('ESTORAGE', storage.message.replace(/nothing was published$/, 'what was there is back'), { what: current });
    throw new MstoreError('EBADINPUT', `checkout could not put ${current} in place in ${target} (${codeOf(e)}); what was there is back`, { what: current });
  }
  for (const a of asides) await rm(a, { recursive: true, force: true }).catch(() => undefined);
  await pruneEmptyDirs(target, plan.removals);
  // The renames themselves must survive a power loss before we report success; a directory
  // fsync that fails (EIO, ENOSPC) means they may not, so the checkout fails naming it.
  // (A directory that is not there, e.g. the target of a version with nothing to write, has nothing to make durable.)
  for (const d of dirs) {
    await fsyncDir(d).catch((e: unknown) => {
      if (codeOf(e) !== 'ENOENT') throw e;
    });
  }
}
