/**
 * A store: `.mstore/` inside a workspace, or a bare store directory. Layout
 * (docs/format.md): config.json, git/ (bare repository of version records), packs/,
 * index/ (lmdb), tmp/, hooks/, lock, lock.shared/, and incoming/<pid>-<rand>/ (an upload being
 * received without the lock; a dead process's is swept by sweepIncoming). Writers hold the
 * writer lock (`withLock`; `withExclusiveLock` for one that removes packs, gc), readers of packs
 * and the index a shared one (`withReadLock`) that an exclusive writer waits for; the index opens
 * read-only where the store cannot be written.
 */
import { mkdir, readFile, stat, readdir, rm, rename } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { MstoreError, storageError } from '../lib/errors.js';
import { atomicWriteFile, fsyncDir, TMP_PREFIX } from '../lib/fsutil.js';
import { GitRepo } from './git.js';
import { autoPackGitObjects } from './git-pack.js';
import { StoreIndex } from './index-db.js';
import { ParallelHasher } from '../lib/hashing.js';
import { processAlive, SharedLock, StoreLock } from '../lib/lock.js';
import { indexPacks } from './reindex.js';
import { finishLastOperation } from './reflog.js';
import { DEFAULT_MAX_REFS } from './ref-names.js';
import { installDefaultHooks } from './hooks.js';
import type { ChunkingConfig } from './content.js';
import { SLOT_BYTES } from './content-slots.js';
import { ObjectSink, type Staging } from './object-sink.js';

export const STORE_DIR = '.mstore';
/** A store's format: mstore/1, or mstore/2 once it holds a recipe (content an mstore/1 reader cannot read). */
export const FORMAT = 'mstore/1';
export const FORMAT_RECIPES = 'mstore/2';
const FORMATS: readonly string[] = [FORMAT, FORMAT_RECIPES];

export interface StoreConfig {
  format: typeof FORMAT | typeof FORMAT_RECIPES;
  bare: boolean;
  /** Text files (json, jsonl, yaml, txt, md, ...) up to this size are plain git blobs. */
  textMaxBytes: number;
  chunking: ChunkingConfig;
  /** The most refs the store holds; a ref update that would pass it is refused (moveRefs). */
  maxRefs: number;
}

export function defaultConfig(bare: boolean): StoreConfig {
  return {
    format: FORMAT,
    bare,
    textMaxBytes: 1024 * 1024,
    chunking: {
      pieceBytes: 4 * 1024 * 1024,
      cdc: { min: 256 * 1024, avg: 1024 * 1024, max: 4 * 1024 * 1024 },
      singleChunkBytes: 1024 * 1024,
      packTargetBytes: 256 * 1024 * 1024,
    },
    maxRefs: DEFAULT_MAX_REFS,
  };
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

async function readConfig(dir: string): Promise<StoreConfig | undefined> {
  let text: string;
  try {
    text = await readFile(path.join(dir, 'config.json'), 'utf8');
  } catch {
    return undefined;
  }
  let cfg: StoreConfig;
  try {
    cfg = JSON.parse(text) as StoreConfig;
  } catch {
    throw new MstoreError('ECORRUPT', `${path.join(dir, 'config.json')} is not valid JSON`);
  }
  if (!FORMATS.includes(cfg.format)) {
    throw new MstoreError('ECORRUPT', `${path.join(dir, 'config.json')}: unsupported store format '${String(cfg.format)}' (this mstore reads ${FORMATS.join(' and ')})`);
  }
  const d = defaultConfig(cfg.bare);
  const merged = { ...d, ...cfg, chunking: { ...d.chunking, ...cfg.chunking, cdc: { ...d.chunking.cdc, ...cfg.chunking?.cdc } } };
  const problem = configProblem(merged);
  if (problem) throw new MstoreError('ECORRUPT', `${path.join(dir, 'config.json')}: ${problem}`);
  return merged;
}

/** Chunks must fit half a pipeline slot (the other half carries the previous chunk's tail). */
function configProblem(c: StoreConfig): string | undefined {
  const maxChunk = SLOT_BYTES / 2;
  const { pieceBytes, cdc, singleChunkBytes, packTargetBytes } = c.chunking;
  const ints = { textMaxBytes: c.textMaxBytes, maxRefs: c.maxRefs, pieceBytes, 'cdc.min': cdc.min, 'cdc.avg': cdc.avg, 'cdc.max': cdc.max, singleChunkBytes, packTargetBytes };
  for (const [k, v] of Object.entries(ints)) if (!Number.isSafeInteger(v) || v <= 0) return `${k} must be a positive integer`;
  if (pieceBytes > maxChunk) return `chunking.pieceBytes must be at most ${maxChunk}`;
  if (!(cdc.min < cdc.avg && cdc.avg < cdc.max)) return 'chunking.cdc needs min < avg < max';
  if (cdc.max > maxChunk) return `chunking.cdc.max must be at most ${maxChunk}`;
  if (singleChunkBytes > maxChunk) return `chunking.singleChunkBytes must be at most ${maxChunk}`;
  return undefined;
}

export class Store {
  private _index: StoreIndex | undefined;
  private _repo: GitRepo | undefined;
  private _hasher: ParallelHasher | undefined;
  /** Locks this handle holds: a read inside a write (verify inside gc) needs no lock of its own. */
  private held = 0;

  private constructor(
    /** The store directory (`.mstore/` or the bare store). */
    readonly dir: string,
    /** The workspace root, or undefined for a bare store. */
    readonly workspace: string | undefined,
    readonly config: StoreConfig,
  ) {}

  get gitdir(): string {
    return path.join(this.dir, 'git');
  }
  get packsDir(): string {
    return path.join(this.dir, 'packs');
  }
  get tmpDir(): string {
    return path.join(this.dir, 'tmp');
  }

  static async init(target: string, opts: { bare?: boolean } = {}): Promise<Store> {
    const bare = !!opts.bare;
    const dir = bare ? target : path.join(target, STORE_DIR);
    if (await readConfig(dir)) throw new MstoreError('EEXISTS', `${dir} is already an mstore store`);
    if (bare && (await exists(dir)) && (await readdir(dir)).length > 0) {
      throw new MstoreError('EEXISTS', `${dir} exists and is not empty`);
    }
    for (const sub of ['packs', 'index', 'tmp', 'hooks', 'lock.shared']) await mkdir(path.join(dir, sub), { recursive: true });
    await GitRepo.init(path.join(dir, 'git'));
    await installDefaultHooks(path.join(dir, 'hooks'));
    const config = defaultConfig(bare);
    // config.json last: its presence is what makes the directory a store.
    await atomicWriteFile(path.join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
    return new Store(dir, bare ? undefined : path.resolve(target), config);
  }

  /** Walks up from `start` to the first `.mstore/` (or a bare store directory). */
  static async find(start: string): Promise<Store> {
    let d = path.resolve(start);
    for (;;) {
      const ws = await readConfig(path.join(d, STORE_DIR));
      if (ws) return new Store(path.join(d, STORE_DIR), d, ws);
      // A bare store is a directory with git/ and packs/ beside config.json; any other
      // config.json (a model's, say) is none of our business.
      if ((await exists(path.join(d, 'git'))) && (await exists(path.join(d, 'packs')))) {
        const bare = await readConfig(d);
        if (bare?.bare) return new Store(d, undefined, bare);
      }
      const up = path.dirname(d);
      if (up === d) break;
      d = up;
    }
    throw new MstoreError('ENOTSTORE', `not in an mstore store (no ${STORE_DIR}/ in ${path.resolve(start)} or any parent); run 'mstore init'`);
  }

  get repo(): GitRepo {
    return (this._repo ??= new GitRepo(this.gitdir));
  }

  get indexDir(): string {
    return path.join(this.dir, 'index');
  }

  /** The index, opened read-only where it cannot be written (index-db.ts); a damaged one throws ECORRUPT. */
  get index(): StoreIndex {
    return (this._index ??= StoreIndex.open(this.indexDir));
  }

  get hasher(): ParallelHasher {
    return (this._hasher ??= new ParallelHasher());
  }

  /**
   * Makes this store's format mstore/2 (config.json rewritten atomically) before its first recipe
   * is recorded: an mstore that reads only mstore/1 then refuses the store in one line instead of
   * reporting the content it cannot read as missing. Called under the writer lock.
   */
  async allowRecipes(): Promise<void> {
    if (this.config.format === FORMAT_RECIPES) return;
    const file = path.join(this.dir, 'config.json');
    const now = await readConfig(this.dir);
    if (now?.format !== FORMAT_RECIPES) {
      const raw = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
      try {
        await atomicWriteFile(file, `${JSON.stringify({ ...raw, format: FORMAT_RECIPES }, null, 2)}\n`);
        await fsyncDir(this.dir);
      } catch (e) {
        throw storageError(e, file) ?? e;
      }
    }
    this.config.format = FORMAT_RECIPES;
  }

  /** A new write path into this store (object-sink.ts); packs sealed at `packBytes` at most. */
  sink(packBytes = this.config.chunking.packTargetBytes): ObjectSink {
    return new ObjectSink(this, Math.min(packBytes, this.config.chunking.packTargetBytes));
  }

  get incomingDir(): string {
    return path.join(this.dir, 'incoming');
  }

  /**
   * A sink that receives without the writer lock (object-sink.ts, staged): into a fresh
   * incoming/<pid>-<rand>/, taking the lock (waiting up to `lockTimeoutMs`) only to publish.
   * `done` removes the staging directory; call it whatever happened.
   */
  async stagedSink(packBytes: number, lockTimeoutMs?: number): Promise<{ sink: ObjectSink; done: () => Promise<void> }> {
    const dir = path.join(this.incomingDir, `${process.pid}-${randomBytes(6).toString('hex')}`);
    await mkdir(path.join(dir, 'tmp'), { recursive: true });
    const staging: Staging = { dir, lock: (fn) => this.withLock('receive', fn, lockTimeoutMs) };
    const sink = new ObjectSink(this, Math.min(packBytes, this.config.chunking.packTargetBytes), staging);
    return { sink, done: () => rm(dir, { recursive: true, force: true }) };
  }

  /** Removes the staging directories of uploads whose process is gone (a killed server). */
  async sweepIncoming(): Promise<void> {
    for (const name of await readdir(this.incomingDir).catch(() => [] as string[])) {
      const pid = Number(/^([0-9]+)-/.exec(name)?.[1]);
      if (pid === process.pid || (pid > 0 && processAlive(pid))) continue;
      await rm(path.join(this.incomingDir, name), { recursive: true, force: true });
    }
  }

  requireWorkspace(what: string): string {
    if (!this.workspace) throw new MstoreError('EBADINPUT', `${what} needs a workspace; ${this.dir} is a bare store`);
    return this.workspace;
  }

  /** Runs `fn` holding the writer lock; cleans temporary files a crashed writer left. Readers run beside it. */
  withLock<T>(command: string, fn: () => Promise<T>, timeoutMs?: number): Promise<T> {
    return this.locked(command, fn, timeoutMs, false);
  }

  /** The writer lock for a writer that removes what readers use (gc): waits for running readers, keeps new ones out. */
  withExclusiveLock<T>(command: string, fn: () => Promise<T>, timeoutMs?: number): Promise<T> {
    return this.locked(command, fn, timeoutMs, true);
  }

  private async locked<T>(command: string, fn: () => Promise<T>, timeoutMs: number | undefined, exclusive: boolean): Promise<T> {
    const timeout = timeoutMs ?? lockTimeout();
    const lockFile = path.join(this.dir, 'lock');
    const lock = await StoreLock.acquire(lockFile, command, timeout, exclusive).catch((e: unknown) => {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') {
        throw new MstoreError('ESTORAGE', `cannot take the writer lock: ${lockFile}: permission denied (${code}); this user cannot write to the store`, { what: lockFile });
      }
      throw storageError(e, lockFile, `cannot take the writer lock:`) ?? e;
    });
    this.held++;
    try {
      // An index opened read-only before the lock (a read, then a write) is reopened writable.
      if (this._index && !this._index.writable) await this.closeIndex();
      await rm(this.tmpDir, { recursive: true, force: true });
      await mkdir(this.tmpDir, { recursive: true });
      // Temporaries of git writes interrupted by a crash (every git writer holds this lock).
      for (const dir of [this.gitdir, path.join(this.gitdir, 'objects', 'pack')]) {
        for (const name of await readdir(dir).catch(() => [] as string[])) {
          if (name.startsWith(TMP_PREFIX)) await rm(path.join(dir, name), { force: true });
        }
      }
      // A crashed writer may have sealed packs it never indexed: index them, don't store them twice.
      if (lock.tookOverStale) {
        await indexPacks(this);
        await this.sweepIncoming();
        // ...and may have moved only some refs of an operation: finish it.
        await finishLastOperation(this);
      }
      const result = await fn();
      // Many loose version records are packed (git-pack.ts); the work above is done, so a
      // failure here (a full disk) leaves the objects loose and is not the command's failure.
      await autoPackGitObjects(this.gitdir).catch(() => undefined);
      return result;
    } catch (e) {
      throw storageError(e, this.dir) ?? e;
    } finally {
      this.held--;
      await lock.release();
    }
  }

  /**
   * Runs `fn` holding a shared lock: writers (gc above all) wait until it returns. Where no
   * shared lock can be written (a read-only store) it runs without one (lock.ts).
   */
  async withReadLock<T>(command: string, fn: () => Promise<T>, timeoutMs?: number): Promise<T> {
    const release = await this.readLock(command, timeoutMs);
    try {
      return await fn();
    } finally {
      await release();
    }
  }

  /** The shared lock for a reader that cannot be one callback (a generator): call the result to release it. */
  async readLock(command: string, timeoutMs?: number): Promise<() => Promise<void>> {
    if (this.held > 0) return async () => undefined;
    const lock = await SharedLock.acquire(path.join(this.dir, 'lock'), command, timeoutMs ?? lockTimeout());
    this.held++;
    let released = false;
    return async () => {
      if (released) return;
      released = true;
      this.held--;
      await lock.release();
    };
  }

  private async closeIndex(): Promise<void> {
    const idx = this._index;
    this._index = undefined;
    await idx?.close().catch(() => undefined);
  }

  /**
   * Sets the lmdb index (derived data) aside as `index.old/` (replacing an older one) and
   * starts an empty one, to be rebuilt from the packs; never opens the old one, whatever
   * state it is in. Caller holds the lock.
   */
  async dropIndex(): Promise<void> {
    await this.closeIndex();
    const old = path.join(this.dir, 'index.old');
    await rm(old, { recursive: true, force: true });
    await rename(this.indexDir, old).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
    await mkdir(this.indexDir, { recursive: true });
  }

  async close(): Promise<void> {
    await this._hasher?.close();
    this._hasher = undefined;
    await this.closeIndex();
  }
}

function lockTimeout(): number {
  return Number(process.env.MSTORE_LOCK_TIMEOUT_MS ?? 10_000);
}
