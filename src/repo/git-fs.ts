/**
 * The filesystem handed to isomorphic-git. Identical to node's, except that every write
 * goes to a temporary name in the repository directory, is fsynced, and is renamed into
 * place. isomorphic-git skips writing a loose object whose path exists, so a torn object left
 * by a crash would never be repaired; with atomic writes an object or ref file is whole or
 * absent. Before a ref is written, the directories of the objects written so far are fsynced.
 * A full or read-only disk is ESTORAGE naming the object or ref file.
 */
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { atomicWriteFile, fsyncDir } from '../lib/fsutil.js';
import { storageError } from '../lib/errors.js';

/**
 * Directories holding renames (new objects, new object subdirectories) not yet fsynced, per
 * repository: a ref publishes only its own repository's objects, and one process may write
 * several repositories (a pull, a backup, a test), some of which may be gone by then.
 */
const unsyncedDirs = new Map<string, Set<string>>();

function remember(gitdir: string, dir: string): void {
  let dirs = unsyncedDirs.get(gitdir);
  if (!dirs) unsyncedDirs.set(gitdir, (dirs = new Set()));
  dirs.add(dir);
}

/** The repository directory of a path inside it: temporaries go there, never among refs. */
function gitdirOf(file: string): string {
  for (const marker of [`${path.sep}objects${path.sep}`, `${path.sep}refs${path.sep}`]) {
    const i = file.lastIndexOf(marker);
    if (i >= 0) return file.slice(0, i);
  }
  return path.dirname(file);
}

function isRef(file: string): boolean {
  return file.includes(`${path.sep}refs${path.sep}`) || file.endsWith(`${path.sep}HEAD`) || file.endsWith('packed-refs');
}

async function writeFile(file: string, data: Uint8Array | string, options?: { mode?: number } | string): Promise<void> {
  const mode = typeof options === 'object' && options?.mode ? options.mode : 0o666;
  const ref = isRef(file);
  // A ref is the publish point: everything written before it must be durable first.
  const gitdir = gitdirOf(file);
  if (ref) {
    // Every repository this ref's path lies in (a parent path named `objects` can make
    // gitdirOf() shorter than the real repository; syncing too much is harmless).
    for (const [repo, dirs] of unsyncedDirs) {
      if (!file.startsWith(repo + path.sep)) continue;
      for (const dir of dirs) await fsyncDir(dir);
      unsyncedDirs.delete(repo);
    }
  }
  // A new object's fan-out directory first: otherwise the rename fails (ENOENT) and
  // isomorphic-git writes and fsyncs the whole object a second time after its own mkdir.
  if (!ref && (await fsp.mkdir(path.dirname(file), { recursive: true })) !== undefined) remember(gitdir, path.dirname(path.dirname(file)));
  try {
    await atomicWriteFile(file, data, { mode, tmpDir: gitdir });
  } catch (e) {
    throw storageError(e, file, 'writing', { nameGiven: true }) ?? e;
  }
  if (ref) {
    const later = deferredRefDirs.get(path.resolve(gitdir));
    if (later) later.add(path.dirname(file));
    else await fsyncDir(path.dirname(file));
  } else remember(gitdir, path.dirname(file));
}

/** Per repository in a group of ref moves: the ref folders whose fsync waits for the group's end. */
const deferredRefDirs = new Map<string, Set<string>>();

/**
 * Runs `fn` (a group of ref writes under the store lock, reflog.ts) with the fsync of each ref's
 * folder put off until it ends, each folder then synced once: a push of 1,000 tags made 1,000
 * folder fsyncs. Each ref file is still written to a temporary, fdatasynced and renamed, so it is
 * whole or absent; a rename lost to a crash before the folder's fsync is a move the ref history
 * already holds, which the next writer finishes (format.md §13).
 */
export async function withRefFolderSyncsDeferred<T>(repoDir: string, fn: () => Promise<T>): Promise<T> {
  const gitdir = path.resolve(repoDir);
  if (deferredRefDirs.has(gitdir)) return fn();
  const dirs = new Set<string>();
  deferredRefDirs.set(gitdir, dirs);
  let result: T;
  try {
    result = await fn();
  } catch (e) {
    deferredRefDirs.delete(gitdir);
    for (const d of dirs) await fsyncDir(d).catch(() => undefined);
    throw e;
  }
  deferredRefDirs.delete(gitdir);
  for (const d of dirs) await fsyncDir(d);
  return result;
}

async function mkdir(dir: string, options?: { recursive?: boolean; mode?: number }): Promise<string | undefined> {
  const made = await fsp.mkdir(dir, options).catch((e: unknown) => {
    throw storageError(e, dir) ?? e;
  });
  remember(gitdirOf(dir), path.dirname(dir));
  return made;
}

/**
 * isomorphic-git, loaded on first use: only writers of git objects and refs need it, and
 * loading it costs a read-only command such as `log` tens of milliseconds.
 */
export async function isoGit(): Promise<typeof import('isomorphic-git').default> {
  return (await import('isomorphic-git')).default;
}

export const gitFs = {
  promises: {
    readFile: fsp.readFile,
    writeFile,
    unlink: fsp.unlink,
    readdir: fsp.readdir,
    mkdir,
    rmdir: fsp.rmdir,
    stat: fsp.stat,
    lstat: fsp.lstat,
    readlink: fsp.readlink,
    symlink: fsp.symlink,
    chmod: fsp.chmod,
  },
};
