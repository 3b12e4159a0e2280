/**
 * The workspace: scanning it (with .mstoreignore), classifying files (git blob, git-lfs
 * pointer, symlink) and the stat cache that lets an unchanged 16 GB file cost a stat.
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import { lstatSync, type BigIntStats } from 'node:fs';
import path from 'node:path';
import ignore, { type Ignore } from 'ignore';
import { MstoreError } from '../lib/errors.js';
import type { StatEntry, StatKind } from './index-db.js';
import type { FileMode } from './git.js';
import { STORE_DIR } from './store.js';
import { TMP_PREFIX, tmpOwner } from '../lib/fsutil.js';
import { processAlive } from '../lib/lock.js';
import { changedAtNs, isRacy, nowNs as clockNs, readStable, readWhole } from '../lib/stable-read.js';
import { showName } from '../format/path-names.js';
import { isUtf8 } from 'node:buffer';

/** Names never versioned, at any depth: store and git metadata, checkout temporaries. */
const ALWAYS_IGNORED = new Set([STORE_DIR, '.git']);

/** Extensions stored as plain git blobs when small enough and valid UTF-8 without NUL. */
export const TEXT_EXTENSIONS = new Set(['.json', '.jsonl', '.yaml', '.yml', '.txt', '.md', '.csv', '.tsv', '.toml', '.cfg', '.ini', '.py', '.sh', '.jinja']);

export interface StatInfo {
  size: number;
  mtimeNs: string;
  ctimeNs: string;
  ino: number;
  mode: number;
}

export interface WorkFile {
  /** Workspace-relative path with '/' separators. */
  path: string;
  abs: string;
  isLink: boolean;
  stat: StatInfo;
}

export function gitMode(f: WorkFile): FileMode {
  if (f.isLink) return '120000';
  return f.stat.mode & 0o111 ? '100755' : '100644';
}

export function nowNs(): string {
  return clockNs().toString();
}

/** What the stat cache keeps of a stat. */
export function statInfoOf(s: BigIntStats): StatInfo {
  return { size: Number(s.size), mtimeNs: s.mtimeNs.toString(), ctimeNs: s.ctimeNs.toString(), ino: Number(s.ino), mode: Number(s.mode) };
}

/** lstat without a promise: a scan stats every file, and a thread-pool round trip per file cost more than the call (issue 15). */
function statOf(abs: string): StatInfo {
  return statInfoOf(lstatSync(abs, { bigint: true }));
}

/**
 * git's racy-git rule. File timestamps come from a coarse clock (a few ms): a write in the
 * same tick as the recorded mtime or ctime would change neither. A stat taken less than
 * RACY_NS (src/lib/stable-read.ts) after the file's last change can therefore not vouch for
 * its content: such an entry is neither recorded (cacheable) nor trusted (statMatches).
 */
export function cacheable(s: StatInfo, at: string): boolean {
  return !isRacy(changedAtNs(s), BigInt(at));
}

/** True when the cache entry still describes the file, so its recorded oid can be trusted. */
export function statMatches(e: StatEntry | undefined, s: StatInfo): boolean {
  return (
    e !== undefined &&
    e.size === s.size &&
    e.mtimeNs === s.mtimeNs &&
    e.ctimeNs === s.ctimeNs &&
    e.ino === s.ino &&
    e.mode === s.mode &&
    cacheable(e, e.at)
  );
}

export function statEntry(s: StatInfo, kind: StatKind, oid: string, blob: string, at: string): StatEntry {
  return { ...s, kind, oid, blob, at };
}

/** The workspace's `.mstoreignore` as a test of a relative path; without one, nothing is ignored (and nothing is matched per file). */
async function loadIgnore(root: string): Promise<(p: string) => boolean> {
  let rules: string;
  try {
    rules = await readFile(path.join(root, '.mstoreignore'), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    return () => false;
  }
  const ig: Ignore = ignore().add(rules);
  return (p) => ig.ignores(p);
}

/** Turns user path arguments (relative to cwd) into workspace-relative prefixes. */
export function toWorkspacePaths(root: string, cwd: string, args: string[]): string[] {
  return args.map((a) => {
    const abs = path.resolve(cwd, a);
    const rel = path.relative(root, abs);
    if (rel.startsWith('..') || path.isAbsolute(rel)) throw new MstoreError('EBADINPUT', `${a} is outside the workspace ${root}`);
    return rel.split(path.sep).join('/');
  });
}

export function underAny(p: string, prefixes: string[]): boolean {
  return prefixes.some((pre) => pre === '' || p === pre || p.startsWith(`${pre}/`));
}

/**
 * Lists the files (and symlinks) of the workspace, or of the given workspace-relative
 * prefixes, skipping ignored names. Other file types are reported in `skipped`.
 */
export async function scanWorkspace(
  root: string,
  prefixes?: string[],
): Promise<{ files: WorkFile[]; skipped: string[]; temps: string[] }> {
  const ignored = await loadIgnore(root);
  const files: WorkFile[] = [];
  const skipped: string[] = [];
  const temps: string[] = [];
  const visit = async (rel: string): Promise<void> => {
    const abs = rel ? path.join(root, rel) : root;
    let entries;
    try {
      entries = await readdir(abs, { withFileTypes: true });
    } catch (e) {
      throw new MstoreError('EBADINPUT', `cannot read directory ${rel || '.'}: ${(e as NodeJS.ErrnoException).code}`);
    }
    // Node reads a name that is not UTF-8 with U+FFFD in place of its bad bytes: such a file
    // cannot even be opened by that name, and a version cannot hold it (docs/format.md §7.9).
    if (entries.some((d) => d.name.includes('\ufffd'))) {
      for (const raw of await readdir(abs, { encoding: 'buffer' })) {
        if (isUtf8(raw)) continue;
        const p = rel ? `${rel}/${raw.toString('utf8')}` : raw.toString('utf8');
        throw new MstoreError('EBADINPUT', `${showName(p)}: a name that is not valid UTF-8 cannot be versioned (rename it)`, { what: p });
      }
    }
    for (const d of entries) {
      if (ALWAYS_IGNORED.has(d.name)) continue;
      const p = rel ? `${rel}/${d.name}` : d.name;
      if (d.name.startsWith(TMP_PREFIX)) {
        temps.push(p);
        continue;
      }
      if (d.isDirectory()) {
        if (ignored(`${p}/`)) continue;
        if (prefixes && !prefixes.some((pre) => pre === '' || pre === p || pre.startsWith(`${p}/`) || p.startsWith(`${pre}/`))) continue;
        await visit(p);
        continue;
      }
      if (ignored(p)) continue;
      if (prefixes && !underAny(p, prefixes)) continue;
      if (d.isFile() || d.isSymbolicLink()) {
        const full = path.join(root, p);
        files.push({ path: p, abs: full, isLink: d.isSymbolicLink(), stat: statOf(full) });
      } else {
        skipped.push(p);
      }
    }
  };
  await visit('');
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { files, skipped, temps };
}

/**
 * Removes temporaries (named as fsutil's tmpName names them; files, or directories a checkout
 * set aside) whose writer is a dead process on this host; a live process's, and any other name
 * that merely starts `.mstore-tmp-`, are kept. `temps` are paths relative to `root`.
 */
export async function sweepTemps(root: string, temps: string[]): Promise<void> {
  for (const p of temps) {
    const pid = tmpOwner(path.basename(p));
    if (pid === undefined) continue;
    if (pid !== process.pid && !processAlive(pid)) await rm(path.join(root, p), { recursive: true, force: true }).catch(() => undefined);
  }
}

/** The temporaries directly in the directories `dirs` (relative to `root`; missing ones skipped), as paths relative to `root`. */
export async function tempsIn(root: string, dirs: Iterable<string>): Promise<string[]> {
  const out: string[] = [];
  for (const d of new Set(dirs)) {
    const names = await readdir(path.join(root, d)).catch(() => [] as string[]);
    for (const n of names) if (n.startsWith(TMP_PREFIX)) out.push(d && d !== '.' ? `${d}/${n}` : n);
  }
  return out;
}

export function isTextCandidate(p: string, size: number, textMaxBytes: number): boolean {
  return size > 0 && size <= textMaxBytes && TEXT_EXTENSIONS.has(path.extname(p).toLowerCase());
}

/** UTF-8 without NUL: what git and humans treat as text. */
export function isText(data: Uint8Array): boolean {
  if (data.includes(0)) return false;
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(data);
    return true;
  } catch {
    return false;
  }
}

/** A whole small file read as one snapshot (src/lib/stable-read.ts), with the stat it belongs to. */
export async function readSmallFile(abs: string, display: string): Promise<{ data: Buffer; stat: StatInfo }> {
  const { value, stat } = await readStable(abs, display, readWhole);
  return { data: value, stat: statInfoOf(stat) };
}

/** sha256 of a whole file read as one snapshot, streamed (where no chunks are wanted, e.g. status). */
export async function hashFile(abs: string, display: string): Promise<{ oid: string; stat: StatInfo }> {
  const { createHash } = await import('node:crypto');
  const buf = Buffer.allocUnsafe(8 * 1024 * 1024);
  const { value, stat } = await readStable(abs, display, async (fh, size) => {
    const h = createHash('sha256');
    let pos = 0;
    while (pos < size) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - pos), pos);
      if (!bytesRead) break;
      h.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
    return h.digest('hex');
  });
  return { oid: value, stat: statInfoOf(stat) };
}
