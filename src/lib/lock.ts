/**
 * One writer per store; readers beside each other and beside a writer that only adds, but
 * never beside an exclusive writer, one that removes what readers use (gc): restic's shared
 * and exclusive locks. The writer lock is a file created with O_EXCL holding the owner's pid
 * and host (and `exclusive: true` for an exclusive writer); a shared lock is one such file per
 * reader in `<lock>.shared/`. A lock whose owner is a dead process on this host is stale: a
 * writer lock is taken over (a kill -9 must not wedge the store), a shared one deleted. An
 * exclusive writer takes its file first and then waits until no live reader is left; a reader
 * registers first and then backs off while a live exclusive writer holds the lock: whichever
 * comes second sees the other. A reader that
 * cannot register (read-only file system, no write permission, a full disk) reads without a
 * shared lock: nobody can write such a store through this mount either. proper-lockfile
 * detects staleness by mtime age only, which would stall every writer after a crash, hence
 * this small module.
 */
import { readFile, unlink, stat, mkdir, readdir } from 'node:fs/promises';
import { open } from './fsutil.js';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import os from 'node:os';
import { MstoreError, isStorageErrno } from './errors.js';
import { sleep } from './retry.js';

interface LockOwner {
  pid: number;
  host: string;
  since: string;
  command: string;
  /** A writer that readers must not run beside (it removes packs): set only when true. */
  exclusive?: boolean;
}

/** True while a process with this id exists on this host (EPERM: it exists, owned by another user). */
export function processAlive(pid: number): boolean {
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

/** The directory of the shared (reader) locks that go with the exclusive lock `file`. */
export function sharedLockDir(file: string): string {
  return `${file}.shared`;
}

function describe(owner: LockOwner | undefined): string {
  return owner ? `pid ${owner.pid} on ${owner.host} (${owner.command}, since ${owner.since})` : 'another process';
}

/** The owner of a lock file while it is live: absent, stale (dead owner) or torn and old give undefined. */
async function liveOwner(file: string): Promise<{ owner: LockOwner | undefined } | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  let owner: LockOwner | undefined;
  try {
    owner = JSON.parse(text) as LockOwner;
  } catch {
    owner = undefined;
  }
  if (owner && owner.host === os.hostname() && !processAlive(owner.pid)) return undefined;
  if (!owner && (await stat(file).then((s) => Date.now() - s.mtimeMs > 2000, () => true))) return undefined;
  return { owner };
}

/**
 * The first live reader other than this process, deleting stale reader files on the way.
 * This process's own readers do not block it (a command that reads and then writes).
 */
async function liveReader(file: string): Promise<LockOwner | undefined> {
  const dir = sharedLockDir(file);
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.endsWith('.json')) continue;
    const f = path.join(dir, name);
    const live = await liveOwner(f);
    if (!live) {
      await unlink(f).catch(() => undefined);
      continue;
    }
    if (live.owner?.pid === process.pid && live.owner.host === os.hostname()) continue;
    return live.owner ?? { pid: 0, host: '?', since: '?', command: 'a reader' };
  }
  return undefined;
}

/**
 * The live exclusive writer a reader must wait for, if any. A writer that only adds, and this
 * process's own writer (a write that reads through another handle), do not stop a reader; a
 * torn lock file (being written) does, until it parses or grows old.
 */
async function blockingWriter(file: string): Promise<{ owner: LockOwner | undefined } | undefined> {
  const w = await liveOwner(file);
  if (!w) return undefined;
  if (!w.owner) return w;
  if (w.owner.pid === process.pid && w.owner.host === os.hostname()) return undefined;
  return w.owner.exclusive ? w : undefined;
}

/** A reader's lock: released by deleting its file; `registered` is false where none could be written. */
export class SharedLock {
  private constructor(
    private readonly file: string | undefined,
    readonly registered: boolean,
  ) {}

  /**
   * Waits while a live writer holds `file`, then registers in `<file>.shared/` (a stale
   * writer's lock does not stop a reader: what it never published is invisible anyway).
   */
  static async acquire(file: string, command: string, timeoutMs: number): Promise<SharedLock> {
    const deadline = Date.now() + timeoutMs;
    const me: LockOwner = { pid: process.pid, host: os.hostname(), since: new Date().toISOString(), command };
    const mine = path.join(sharedLockDir(file), `${process.pid}-${randomBytes(6).toString('hex')}.json`);
    for (;;) {
      const writer = await blockingWriter(file);
      if (!writer) {
        try {
          await mkdir(sharedLockDir(file), { recursive: true });
          const fh = await open(mine, 'wx');
          try {
            await fh.writeFile(JSON.stringify(me));
          } finally {
            await fh.close();
          }
        } catch (e) {
          await unlink(mine).catch(() => undefined);
          if (isStorageErrno(e) || (e as NodeJS.ErrnoException).code === 'EACCES' || (e as NodeJS.ErrnoException).code === 'EPERM') {
            return new SharedLock(undefined, false);
          }
          throw e;
        }
        // An exclusive writer that took the lock meanwhile may not have seen this file: back off.
        if (!(await blockingWriter(file))) return new SharedLock(mine, true);
        await unlink(mine).catch(() => undefined);
        continue;
      }
      if (Date.now() >= deadline) {
        throw new MstoreError('ELOCKED', `store is locked by ${describe(writer.owner)}; waited ${waited(timeoutMs)} (lock file ${file})`);
      }
      await sleep(50);
    }
  }

  async release(): Promise<void> {
    if (this.file) await unlink(this.file).catch(() => undefined);
  }
}

/** How long a lock was waited for, as the message says it: 300 ms, not "0 s". */
function waited(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`;
}

export class StoreLock {
  private constructor(
    private readonly file: string,
    /** True when a crashed owner's lock was taken over: its unfinished work may need recovery. */
    readonly tookOverStale: boolean,
  ) {}

  /** `exclusive`: also wait for the running readers, and keep new ones out while held. */
  static async acquire(file: string, command: string, timeoutMs: number, exclusive = false): Promise<StoreLock> {
    const deadline = Date.now() + timeoutMs;
    const me: LockOwner = { pid: process.pid, host: os.hostname(), since: new Date().toISOString(), command, ...(exclusive ? { exclusive } : {}) };
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
        const lock = new StoreLock(file, stale);
        if (exclusive) await lock.waitForReaders(deadline, timeoutMs);
        return lock;
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
      if ((owner && owner.host === me.host && !processAlive(owner.pid)) || tornAndOld) {
        if (await takeOver(file, owner)) {
          stale = true;
          continue;
        }
      }
      if (Date.now() >= deadline) {
        throw new MstoreError('ELOCKED', `store is locked by ${describe(owner)}; waited ${waited(timeoutMs)} (lock file ${file})`);
      }
      await sleep(50);
    }
  }

  /** Holding the lock (no new reader starts), waits for the readers already running to finish. */
  private async waitForReaders(deadline: number, timeoutMs: number): Promise<void> {
    for (;;) {
      const reader = await liveReader(this.file);
      if (!reader) return;
      if (Date.now() >= deadline) {
        await this.release();
        throw new MstoreError('ELOCKED', `store is being read by ${describe(reader)}; waited ${waited(timeoutMs)} (shared locks in ${sharedLockDir(this.file)})`);
      }
      await sleep(50);
    }
  }

  async release(): Promise<void> {
    await unlink(this.file).catch(() => undefined);
  }
}
