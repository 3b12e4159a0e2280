/**
 * One writer per store. The lock is a file created with O_EXCL holding the owner's pid
 * and host; a lock whose owner is a dead process on this host is stale and taken over
 * (a kill -9 must not wedge the store). proper-lockfile detects staleness by mtime
 * age only, which would stall every writer after a crash, hence this small module.
 */
import { open, readFile, unlink, stat } from 'node:fs/promises';
import os from 'node:os';
import { MstoreError } from './errors.js';

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
        await fh.writeFile(JSON.stringify(me));
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
      if (owner && owner.host === me.host && !alive(owner.pid)) {
        await unlink(file).catch(() => undefined);
        stale = true;
        continue;
      }
      if (!owner) {
        // A torn lock file from a crash between create and write: stale after a short while.
        const age = await stat(file).then((s) => Date.now() - s.mtimeMs, () => 0);
        if (age > 2000) {
          await unlink(file).catch(() => undefined);
          stale = true;
          continue;
        }
      }
      if (Date.now() >= deadline) {
        const who = owner ? `pid ${owner.pid} on ${owner.host} (${owner.command}, since ${owner.since})` : 'another process';
        throw new MstoreError('ELOCKED', `store is locked by ${who}; waited ${Math.round(timeoutMs / 1000)} s (lock file ${file})`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async release(): Promise<void> {
    await unlink(this.file).catch(() => undefined);
  }
}
