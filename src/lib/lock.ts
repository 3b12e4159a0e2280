/**
 * One writer per store. The lock is a file created with O_EXCL holding the owner's pid
 * and host; a lock whose owner is a dead process on this host is stale and taken over
 * (a kill -9 must not wedge the store). proper-lockfile detects staleness by mtime
 * age only, which would stall every writer after a crash, hence this small module.
 */
import { readFile, unlink, stat } from 'node:fs/promises';
import { open } from './fsutil.js';
import os from 'node:os';
import { MstoreError } from './errors.js';
import { sleep } from './retry.js';

interface LockOwner {
  pid: number;
  host: string;
  since: string;
  command: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes a stale lock under a second, short-lived lock, re-reading it first: two waiters
 * that both saw the same dead owner must not let the slower one delete the faster one's
 * fresh lock. A takeover lock older than 10 s is itself a crash leftover.
 */
async function takeOver(file: string, seen: LockOwner | undefined): Promise<boolean> {
  const guard = `${file}.takeover`;
  try {
    await (await open(guard, 'wx')).close();
  } catch {
    const old = await stat(guard).then((s) => Date.now() - s.mtimeMs > 10_000, () => false);
    if (old) await unlink(guard).catch(() => undefined);
    return false;
  }
  try {
    const now = await readFile(file, 'utf8').then(
      (t) => t,
      () => undefined,
    );
    if (now === undefined) return true; // already gone
    const stillStale = seen ? isSameOwner(now, seen) : !parses(now);
    if (stillStale) await unlink(file).catch(() => undefined);
    return true;
  } finally {
    await unlink(guard).catch(() => undefined);
  }
}

function parses(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

function isSameOwner(text: string, seen: LockOwner): boolean {
  try {
    const o = JSON.parse(text) as LockOwner;
    return o.pid === seen.pid && o.host === seen.host && o.since === seen.since;
  } catch {
    return false;
  }
}

export class StoreLock {
  private constructor(
    private readonly file: string,
    /** True when a crashed owner's lock was taken over: its unfinished work may need recovery. */
    readonly tookOverStale: boolean,
  ) {}

  static async acquire(file: string, command: string, timeoutMs: number): Promise<StoreLock> {
    const deadline = Date.now() + timeoutMs;
    const me: LockOwner = { pid: process.pid, host: os.hostname(), since: new Date().toISOString(), command };
    let stale = false;
    for (;;) {
      try {
        const fh = await open(file, 'wx');
        try {
          await fh.writeFile(JSON.stringify(me));
        } catch (e) {
          // Ours, but empty or torn (a full disk): remove it, or the next command waits it out.
          await fh.close().catch(() => undefined);
          await unlink(file).catch(() => undefined);
          throw e;
        }
        await fh.close();
        return new StoreLock(file, stale);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      let owner: LockOwner | undefined;
      try {
        owner = JSON.parse(await readFile(file, 'utf8')) as LockOwner;
      } catch {
        owner = undefined; // being written right now, or torn by a crash
      }
      const tornAndOld = !owner && (await stat(file).then((s) => Date.now() - s.mtimeMs > 2000, () => false));
      if ((owner && owner.host === me.host && !alive(owner.pid)) || tornAndOld) {
        if (await takeOver(file, owner)) {
          stale = true;
          continue;
        }
      }
      if (Date.now() >= deadline) {
        const who = owner ? `pid ${owner.pid} on ${owner.host} (${owner.command}, since ${owner.since})` : 'another process';
        throw new MstoreError('ELOCKED', `store is locked by ${who}; waited ${Math.round(timeoutMs / 1000)} s (lock file ${file})`);
      }
      await sleep(50);
    }
  }

  async release(): Promise<void> {
    await unlink(this.file).catch(() => undefined);
  }
}
