/**
 * The filesystem handed to isomorphic-git. Identical to node's, except that every write
 * goes to a temporary name, is fsynced, and is renamed into place. isomorphic-git skips
 * writing a loose object whose path exists, so a torn object left by a crash would never be
 * repaired; with atomic writes an object or ref file is whole or absent.
 */
import * as fsp from 'node:fs/promises';
import { atomicWriteFile, fsyncDir } from './fsutil.js';
import path from 'node:path';

async function writeFile(file: string, data: Uint8Array | string, options?: { mode?: number } | string): Promise<void> {
  const mode = typeof options === 'object' && options?.mode ? options.mode : 0o666;
  await atomicWriteFile(file, data, mode);
  // A ref is the publish point: make its rename durable before anyone relies on it.
  if (file.includes(`${path.sep}refs${path.sep}`) || file.endsWith(`${path.sep}HEAD`) || file.endsWith('packed-refs')) {
    await fsyncDir(path.dirname(file));
  }
}

export const gitFs = {
  promises: {
    readFile: fsp.readFile,
    writeFile,
    unlink: fsp.unlink,
    readdir: fsp.readdir,
    mkdir: fsp.mkdir,
    rmdir: fsp.rmdir,
    stat: fsp.stat,
    lstat: fsp.lstat,
    readlink: fsp.readlink,
    symlink: fsp.symlink,
    chmod: fsp.chmod,
  },
};
