/**
 * The filesystem handed to isomorphic-git. Identical to node's, except that every write
 * goes to a temporary name in the repository directory, is fsynced, and is renamed into
 * place. isomorphic-git skips writing a loose object whose path exists, so a torn object left
 * by a crash would never be repaired; with atomic writes an object or ref file is whole or
 * absent. Before a ref is written, the directories of the objects written so far are fsynced.
 */
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { atomicWriteFile, fsyncDir } from '../lib/fsutil.js';

/** Directories holding renames (new objects, new object subdirectories) not yet fsynced. */
const unsyncedDirs = new Set<string>();

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
  if (ref) {
    for (const dir of unsyncedDirs) await fsyncDir(dir);
    unsyncedDirs.clear();
  }
  await atomicWriteFile(file, data, { mode, tmpDir: gitdirOf(file) });
  if (ref) await fsyncDir(path.dirname(file));
  else unsyncedDirs.add(path.dirname(file));
}

async function mkdir(dir: string, options?: { recursive?: boolean; mode?: number }): Promise<string | undefined> {
  const made = await fsp.mkdir(dir, options);
  unsyncedDirs.add(path.dirname(dir));
  return made;
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
