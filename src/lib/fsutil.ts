/**
 * Small filesystem helpers for the publish-after-fsync rule, and the one way the store's data
 * path writes, fsyncs and renames: `open` (a handle opened for writing), `rename` and
 * `fsyncDir` here pass every such call through the fault seam (src/lib/faults.ts, inert
 * unless a test enables it) and name the file in a failing write's or fsync's error (node's
 * own says only "ENOSPC: no space left on device, write"). Modules on the data path import
 * these instead of node:fs/promises' open and rename.
 */
import * as fsp from 'node:fs/promises';
import { unlink, chmod, type FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fault, type FaultClass } from './faults.js';

/** Every temporary file mstore creates starts with this, so scans skip it and sweeps find it. */
export const TMP_PREFIX = '.mstore-tmp-';

/** A node error from `syscall` on `file`, with the file named when node left it out. */
function named(e: unknown, syscall: string, file: string): unknown {
  const n = e as NodeJS.ErrnoException;
  if (!(e instanceof Error) || typeof n.code !== 'string' || n.path !== undefined) return e;
  n.path = file;
  n.message = `${n.message.split('\n')[0]} '${file}'`;
  return n;
}

/** `fn()`, one call of class `cls` on `file`: through the fault seam, its error naming the file. */
async function guarded<T>(cls: FaultClass, syscall: string, file: string, fn: () => Promise<T>): Promise<T> {
  fault(cls, syscall, file);
  try {
    return await fn();
  } catch (e) {
    throw named(e, syscall, file);
  }
}

type Method = (...args: never[]) => Promise<unknown>;

/**
 * node's open(). A handle opened for anything but reading comes back with its write, writev,
 * writeFile, appendFile (class write), sync and datasync (class fsync) passing the seam and
 * naming `file` in their errors; every other method is node's.
 */
export async function open(file: string, flags: string | number = 'r', mode?: number): Promise<FileHandle> {
  const fh = await fsp.open(file, flags, mode);
  if (flags === 'r') return fh;
  const wrap = (name: 'write' | 'writev' | 'writeFile' | 'appendFile' | 'sync' | 'datasync', cls: FaultClass): void => {
    const orig = fh[name] as unknown as Method;
    const syscall = cls === 'write' ? 'write' : name === 'sync' ? 'fsync' : 'fdatasync';
    (fh as unknown as Record<string, Method>)[name] = (...args: never[]) => guarded(cls, syscall, file, () => orig.apply(fh, args));
  };
  for (const m of ['write', 'writev', 'writeFile', 'appendFile'] as const) wrap(m, 'write');
  wrap('sync', 'fsync');
  wrap('datasync', 'fsync');
  return fh;
}

/** node's rename(), through the fault seam (class rename). */
export async function rename(from: string, to: string): Promise<void> {
  fault('rename', 'rename', `${from}' -> '${to}`);
  await fsp.rename(from, to);
}

/** fsync a directory so a rename inside it survives power loss. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await guarded('fsync', 'fsync', dir, () => fh.sync());
  } finally {
    await fh.close();
  }
}

/**
 * `<dir>/.mstore-tmp-<pid>-<8 hex>`, in the target's directory unless `dir` is given (it must
 * be on the same filesystem for the rename). The name is never made from the final name, so
 * it fits wherever the final name fits (a final name may be 255 bytes, the most a file system
 * holds per name). The pid lets a sweep tell a dead writer's leftovers from a live one's
 * (`tmpOwner`). Every temporary name mstore gives a file it later renames comes from here.
 */
export function tmpName(finalPath: string, dir?: string): string {
  return path.join(dir ?? path.dirname(finalPath), `${TMP_PREFIX}${process.pid}-${randomBytes(4).toString('hex')}`);
}

/**
 * The writer's pid when `name` (a base name) is a temporary `tmpName` makes, in any of the
 * formats it has had (`.mstore-tmp-<pid>-<8 hex>`, the older `.mstore-tmp-<name>.tmp-<pid>-<8 hex>`);
 * undefined for any other name. Sweeps delete only these, and only when the pid is dead.
 */
export function tmpOwner(name: string): number | undefined {
  const m = /^\.mstore-tmp-(?:.*\.tmp-)?([0-9]+)-[0-9a-f]{8}$/s.exec(name);
  return m ? Number(m[1]) : undefined;
}

export interface AtomicWriteOptions {
  mode?: number;
  /** Set the mode exactly (chmod), not filtered by the umask. */
  exactMode?: boolean;
  /** Where the temporary file goes (default: the target's directory). */
  tmpDir?: string;
}

/** Write to a temporary name, fsync, rename over the target: readers see old or new, never partial. */
export async function atomicWriteFile(file: string, data: Uint8Array | string, opts: AtomicWriteOptions = {}): Promise<void> {
  const tmp = tmpName(file, opts.tmpDir);
  await writeTempFile(tmp, data, opts);
  try {
    await rename(tmp, file);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}

/**
 * The first half of atomicWriteFile: creates `tmp` (O_EXCL), writes, fdatasyncs and sets the
 * mode; the caller renames it into place. On an error `tmp` is gone.
 */
export async function writeTempFile(tmp: string, data: Uint8Array | string, opts: Omit<AtomicWriteOptions, 'tmpDir'> = {}): Promise<void> {
  const mode = opts.mode ?? 0o666;
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.writeFile(data);
    await fh.datasync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fh.close();
  try {
    if (opts.exactMode) await chmod(tmp, mode);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}

/**
 * Writes `data` at `position` in pieces of at most 1 MiB. Measured here: 1 GiB written with
 * 16 MiB write() calls takes 1.1-3.0 s, with 1 MiB calls 0.5-0.8 s (the kernel's copy into
 * fresh page-cache pages stays in the CPU caches when the source piece does).
 */
export async function writeInPieces(fh: FileHandle, data: Uint8Array, position: number): Promise<void> {
  const PIECE = 1024 * 1024;
  for (let o = 0; o < data.length; ) {
    const n = Math.min(PIECE, data.length - o);
    const { bytesWritten } = await fh.write(data, o, n, position + o);
    o += bytesWritten;
  }
}
