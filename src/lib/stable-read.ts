/**
 * Reading a file as one consistent snapshot: the one mechanism every workspace read goes
 * through (small files, text files, chunked large files, hashing for status).
 *
 * Rules it keeps (docs/safety.md, "Files that change while they are read"):
 * - a read is bracketed by two stats of the same open file (size, mtime, ctime, inode,
 *   device), and the path must still name that file afterwards; any difference means the
 *   bytes read may be a mix of two versions: they are thrown away and the file is read again,
 *   at most READ_ATTEMPTS times, then refused with one line naming it;
 * - timestamps come from a coarse clock: a write in the same tick as the file's last change
 *   would leave them as they are. A file changed less than RACY_NS ago is read only once that
 *   window has passed (a bounded wait), so any later write shows in its ctime;
 * - the stat returned is the one the bytes belong to (for the stat cache).
 */
import { open, lstat, type FileHandle } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { MstoreError } from './errors.js';

/** Reads of a file that keeps changing before it is refused. */
export const READ_ATTEMPTS = 3;

/**
 * How far apart two writes must be for the file's timestamps to tell them apart (the
 * kernel's coarse clock ticks every 1–10 ms): git's racy-git window, with margin.
 */
export const RACY_NS = 20_000_000n;

export function nowNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

/** The newer of a stat's mtime and ctime (ns). */
export function changedAtNs(s: { mtimeNs: bigint | string; ctimeNs: bigint | string }): bigint {
  const m = BigInt(s.mtimeNs);
  const c = BigInt(s.ctimeNs);
  return m > c ? m : c;
}

/** True when a change at `changedNs` could share a clock tick with something at `atNs` or later. */
export function isRacy(changedNs: bigint, atNs: bigint): boolean {
  return changedNs + RACY_NS >= atNs;
}

function sameFile(a: BigIntStats, b: BigIntStats): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
}

function cannotRead(display: string, e: unknown): MstoreError {
  return new MstoreError('EBADINPUT', `cannot read ${display}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { what: display });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Calls `read(fh, size)` on `abs` (a fresh descriptor each attempt) until one whole read
 * happens with the file unchanged, and returns its result with the file's stat. `read` must
 * be safe to repeat and must publish nothing itself: the caller uses only the returned value.
 * An error thrown by `read` while the file changed counts as a change; otherwise it is
 * rethrown (a failed read of the file as EBADINPUT naming it). Throws EBADINPUT naming
 * `display` when the file cannot be opened or keeps changing.
 */
export async function readStable<T>(
  abs: string,
  display: string,
  read: (fh: FileHandle, size: number) => Promise<T>,
): Promise<{ value: T; stat: BigIntStats }> {
  for (let attempt = 1; ; attempt++) {
    let fh: FileHandle;
    try {
      fh = await open(abs, 'r');
    } catch (e) {
      throw cannotRead(display, e);
    }
    let outcome: { value: T; stat: BigIntStats } | { failure: unknown } | undefined;
    try {
      let before = await fh.stat({ bigint: true });
      const age = nowNs() - changedAtNs(before);
      if (age < RACY_NS) {
        // Bounded: a timestamp in the future (clock skew) costs one window, not forever.
        await sleep(Number((age < 0n ? RACY_NS : RACY_NS - age) / 1_000_000n) + 1);
        before = await fh.stat({ bigint: true });
      }
      let value: T | undefined;
      let failure: unknown;
      let failed = false;
      try {
        value = await read(fh, Number(before.size));
      } catch (e) {
        failure = e; // e.g. it shrank under the reader: a change if the stat says so
        failed = true;
      }
      const after = await fh.stat({ bigint: true });
      const named = await lstat(abs, { bigint: true }).catch(() => undefined); // gone or renamed away: changed
      if (sameFile(before, after) && named && sameFile(after, named)) outcome = failed ? { failure } : { value: value as T, stat: after };
    } catch (e) {
      throw cannotRead(display, e);
    } finally {
      await fh.close().catch(() => undefined);
    }
    if (outcome && 'failure' in outcome) {
      const f = outcome.failure as NodeJS.ErrnoException;
      // A failed read of this file names it; anything else (a full disk under the pack writer) is the reader's own error.
      throw !(f instanceof MstoreError) && f?.syscall === 'read' ? cannotRead(display, f) : f;
    }
    if (outcome) return outcome;
    if (attempt >= READ_ATTEMPTS) {
      throw new MstoreError('EBADINPUT', `${display} changed while it was being read (${READ_ATTEMPTS} tries); commit again when it is stable`, {
        what: display,
      });
    }
  }
}

/** Reads `size` bytes from the start of `fh`; fewer means the file shrank (the caller's stat check then retries). */
export async function readWhole(fh: FileHandle, size: number): Promise<Buffer> {
  const data = Buffer.alloc(size);
  let done = 0;
  while (done < size) {
    const { bytesRead } = await fh.read(data, done, size - done, done);
    if (bytesRead === 0) return data.subarray(0, done);
    done += bytesRead;
  }
  return data;
}
