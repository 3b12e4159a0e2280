/**
 * `checkout`: materialise a version, whole or some files, into the workspace or any
 * directory. The destination is checked first (checkout-target.ts: never a store, nor into
 * one), every conflict is found before anything is written, and the files are written all or
 * nothing (checkout-write.ts): each to a temporary name, verified, fsynced; renamed into place
 * only when all are. Dead checkouts' temporaries in the directories written are swept first.
 */
import { openReader } from './recipe.js';
import { lstat, readdir } from 'node:fs/promises';
import path from 'node:path';
import picomatch from 'picomatch';
import { MstoreError } from '../lib/errors.js';
import type { Store } from '../repo/store.js';
import { INLINE_HASH_BYTES } from '../lib/hashing.js';
import type { StatEntry } from '../repo/index-db.js';
import { identifyFile } from '../repo/identify.js';
import { nowNs, scanWorkspace, statEntry, statMatches, sweepTemps, tempsIn, type StatInfo, type WorkFile } from '../repo/workspace.js';
import { readMeta, resolveRev } from '../repo/versions.js';
import { badEntriesError, listVersionFilesChecked, type VersionFile } from '../repo/version-files.js';
import type { Progress } from '../lib/progress.js';
import { checkoutTarget, refuseStoresBelow } from './checkout-target.js';
import { writeCheckout } from './checkout-write.js';

export interface CheckoutOptions {
  rev: string;
  cwd: string;
  /** Materialise here instead of the workspace. */
  to?: string;
  /** Version paths, directories or globs; all files when empty. */
  patterns?: string[];
  force?: boolean;
  /**
   * The caller chose `to` itself inside a store on purpose (consolidate's work area under the
   * store's tmp/, a deploy root configured inside a store): skip the refusal of destinations
   * inside a store. Never set for a user's --to.
   */
  allowInsideStore?: boolean;
  onProgress?: (p: Progress) => void;
}

export interface CheckoutResult {
  version: string | undefined;
  commit: string;
  target: string;
  written: string[];
  unchanged: string[];
  removed: string[];
  bytes: number;
}

const GLOB_CHARS = /[*?[\]{}!]/;

export function selectFiles(files: VersionFile[], patterns: string[] | undefined, what: string): VersionFile[] {
  if (!patterns?.length) return files;
  const chosen = new Set<VersionFile>();
  for (const pat of patterns) {
    const clean = pat.replace(/^\.\//, '').replace(/\/+$/, '');
    const match = GLOB_CHARS.test(clean)
      ? picomatch(clean, { dot: true })
      : (p: string) => p === clean || p.startsWith(`${clean}/`);
    const hits = files.filter((f) => match(f.path));
    if (!hits.length) throw new MstoreError('EBADINPUT', `'${pat}' matches no file in ${what}`);
    hits.forEach((f) => chosen.add(f));
  }
  return files.filter((f) => chosen.has(f));
}

/** Tree paths come from stores that may have been pulled from elsewhere: never trust them. */
function safeJoin(root: string, p: string): string {
  const parts = p.split('/');
  if (parts.some((c) => c === '' || c === '.' || c === '..' || c === '.mstore' || c === '.git' || c.includes('\\') || c.includes('\0'))) {
    throw new MstoreError('ECORRUPT', `refusing unsafe path '${p}' in version tree`);
  }
  return path.join(root, ...parts);
}

async function onlyRemovedFilesUnder(root: string, rel: string, removing: Set<string>): Promise<boolean> {
  for (const e of await readdir(path.join(root, rel), { withFileTypes: true })) {
    const p = `${rel}/${e.name}`;
    if (e.isDirectory() ? !(await onlyRemovedFilesUnder(root, p, removing)) : !removing.has(p)) return false;
  }
  return true;
}

/** The first parent directory of `rel` under `root` that is a symlink or not a directory. */
async function blockedParent(root: string, rel: string): Promise<{ path: string; kind: string } | undefined> {
  const parts = rel.split('/');
  for (let i = 1; i < parts.length; i++) {
    const p = parts.slice(0, i).join('/');
    const st = await lstat(path.join(root, p)).catch(() => undefined);
    if (!st) return undefined;
    if (st.isSymbolicLink()) return { path: p, kind: 'symlink' };
    if (!st.isDirectory()) return { path: p, kind: 'file' };
  }
  return undefined;
}

async function lstatInfo(abs: string): Promise<{ info: StatInfo; isDir: boolean; isLink: boolean } | undefined> {
  try {
    const s = await lstat(abs, { bigint: true });
    return {
      info: { size: Number(s.size), mtimeNs: s.mtimeNs.toString(), ctimeNs: s.ctimeNs.toString(), ino: Number(s.ino), mode: Number(s.mode) },
      isDir: s.isDirectory(),
      isLink: s.isSymbolicLink(),
    };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw e;
  }
}

export async function checkout(store: Store, opts: CheckoutOptions): Promise<CheckoutResult> {
  const { target, intoWorkspace } = await checkoutTarget(store, opts.cwd, opts.to, opts.allowInsideStore);
  const run = async (): Promise<CheckoutResult> => {
    const repo = store.repo;
    const index = store.index;
    const commit = await resolveRev(repo, opts.rev);
    const meta = await readMeta(repo, commit);
    const what = meta?.version ?? commit.slice(0, 12);
    // Entries the version cannot hold (docs/format.md §7.9) are never written; the rest is, and then they are named.
    const { files: all, bad } = await listVersionFilesChecked(repo, commit);
    const files = selectFiles(all, opts.patterns, what);
    // The hash worker starts now, overlapping the rest, when a file is big enough to use it.
    if (files.some((f) => f.size > INLINE_HASH_BYTES)) store.hasher.warm();
    await refuseStoresBelow(target, files.map((f) => f.path));
    const dirsOf = (p: string): string[] => p.split('/').slice(0, -1).map((_, i, a) => a.slice(0, i + 1).join('/'));
    // A hostile tree may hold a path both as a file (or symlink) and as a directory: never write through it.
    const filePaths = new Set(files.map((f) => f.path));
    for (const f of files) {
      const both = dirsOf(f.path).find((d) => filePaths.has(d));
      if (both) throw new MstoreError('ECORRUPT', `refusing to write ${f.path}: ${both} is a file of ${what} too`, { what: f.path });
    }
    // Temporaries of a killed checkout: anywhere in the workspace; under --to, in the directories this one writes.
    const temps = intoWorkspace ? (await scanWorkspace(target)).temps : await tempsIn(target, ['', ...files.flatMap((f) => dirsOf(f.path))]);
    await sweepTemps(target, temps);

    const writes: { f: VersionFile; dest: string }[] = [];
    const unchanged: { f: VersionFile; dest: string }[] = [];
    const conflicts: string[] = [];

    // Whole-version checkout into the workspace also removes tracked files the version lacks.
    const removals: string[] = [];
    if (intoWorkspace && !opts.patterns?.length) {
      const wanted = new Set(all.map((f) => f.path));
      for (const p of index.statPaths()) {
        if (wanted.has(p)) continue;
        if (await blockedParent(target, p)) continue; // never delete through a symlinked directory
        const abs = path.join(target, p);
        const cur = await lstatInfo(abs);
        const cached = index.stat(p);
        if (!cur || opts.force || statMatches(cached, cur.info)) {
          removals.push(p);
          continue;
        }
        if (cur.isDir) {
          conflicts.push(`${p} (now a directory, and not in ${what})`);
          continue;
        }
        // The stat differs (or is too recent to trust): the content decides.
        const now = await identifyFile(repo, { path: p, abs, isLink: cur.isLink, stat: cur.info }, store.config.textMaxBytes);
        if (cached && now.blob === cached.blob) removals.push(p);
        else conflicts.push(`${p} (modified, and not in ${what})`);
      }
    }
    const removing = new Set(removals);

    // A parent that is a symlink (or a file) must never be written through: the file would
    // land outside the target. It is replaced only when it is a tracked file going away, or with --force.
    const clearFirst = new Set<string>();
    const emptiedDirs = new Set<string>();
    for (const f of files) {
      const dest = safeJoin(target, f.path);
      const blocker = await blockedParent(target, f.path);
      if (blocker) {
        if (removing.has(blocker.path) || opts.force) {
          clearFirst.add(blocker.path);
          writes.push({ f, dest });
        } else conflicts.push(`${f.path} (${blocker.path} is a ${blocker.kind} in the way)`);
        continue;
      }
      const cur = await lstatInfo(dest);
      if (!cur) {
        writes.push({ f, dest });
        continue;
      }
      if (cur.isDir) {
        // A directory whose files all go away with this checkout is removed (git does the same).
        if (await onlyRemovedFilesUnder(target, f.path, removing)) {
          emptiedDirs.add(f.path);
          writes.push({ f, dest });
        } else conflicts.push(`${f.path} (a directory is in the way)`);
        continue;
      }
      const cached = intoWorkspace ? index.stat(f.path) : undefined;
      const tracked = statMatches(cached, cur.info);
      const wf: WorkFile = { path: f.path, abs: dest, isLink: cur.isLink, stat: cur.info };
      const blob = tracked ? cached!.blob : (await identifyFile(repo, wf, store.config.textMaxBytes)).blob;
      const sameMode = cur.isLink ? f.mode === '120000' : f.mode === (cur.info.mode & 0o111 ? '100755' : '100644');
      if (blob === f.blob && sameMode) unchanged.push({ f, dest });
      else if (tracked || opts.force || (intoWorkspace && blob === cached?.blob)) writes.push({ f, dest });
      else conflicts.push(f.path);
    }
    if (conflicts.length) {
      const shown = conflicts.slice(0, 5).join(', ') + (conflicts.length > 5 ? `, and ${conflicts.length - 5} more` : '');
      throw new MstoreError('ECONFLICT', `checkout of ${what} would overwrite local changes: ${shown} (commit them, or use --force)`);
    }

    const total = writes.reduce((a, w) => a + w.f.size, 0);
    let done = 0;
    const onBytes = (n: number): void => {
      done += n;
      opts.onProgress?.({ phase: 'checkout', done, total });
    };
    const reader = openReader(store);
    try {
      await writeCheckout({ target, writes, removals, emptiedDirs: [...emptiedDirs], clearFirst: [...clearFirst] }, repo, reader, onBytes);
    } finally {
      await reader.close();
    }

    if (intoWorkspace) {
      const at = nowNs();
      const updates = new Map<string, StatEntry | null>();
      for (const { f, dest } of [...writes, ...unchanged]) {
        const cur = await lstatInfo(dest);
        if (cur) updates.set(f.path, statEntry(cur.info, f.kind, f.oid, f.blob, at));
      }
      for (const p of removals) updates.set(p, null);
      index.updateStats(updates);
    }
    if (bad.length && !opts.patterns?.length) throw await badEntriesError(repo, commit, bad, `; its other ${files.length} files were checked out`);
    return {
      version: meta?.version,
      commit,
      target,
      written: writes.map((w) => w.f.path),
      unchanged: unchanged.map((w) => w.f.path),
      removed: removals,
      bytes: total,
    };
  };
  // Into the workspace the stat cache changes too: hold the writer lock; elsewhere a reader's.
  return intoWorkspace ? store.withLock('checkout', run) : store.withReadLock('checkout', run);
}
