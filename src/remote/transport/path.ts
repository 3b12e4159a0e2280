/**
 * A Remote that is an mstore store on this machine: the path transport, and what
 * `mstore serve` puts behind HTTP. Receiving follows the store's publish order: objects are
 * re-hashed, chunks, manifests and git objects are staged without the store lock and
 * published under it every PUBLISH_EVERY bytes (an interrupted upload keeps what arrived
 * whole; packs are fsynced before they move in, git objects written atomically), and refs move only in updateRefs, after a compare-and-swap, the
 * fast-forward rules, a presence walk and a full verify of every new version.
 */
import { takeRecipes, type ArrivedRecipe } from '../../ops/recipe-intake.js';
import { open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Store } from '../../repo/store.js';
import { MstoreError } from '../../lib/errors.js';
import { packPath } from '../../repo/pack.js';
import { decodeManifest, encodeManifest } from '../../repo/index-db.js';
import { reachableObjects, type GitType, descendsFrom } from '../../repo/git-walk.js';
import { gitObjects, type GitObject } from '../../repo/git-objects.js';
import type { Roots } from '../../repo/reach.js';
import { moveRefs, type RefMove } from '../../repo/reflog.js';
import { verify } from '../../ops/integrity/verify.js';
import { checkObject } from '../wire.js';
import { ReceiptHasher } from '../../repo/receipt.js';
import { BufferPool } from '../../lib/buffer-pool.js';
import { InFlight } from '../../lib/in-flight.js';
import { localRefs } from '../../repo/refs.js';
import { deployStatus, type DeployStatus } from '../../repo/deploy-records.js';
import { packageRoot } from '../../lib/package-files.js';
import { runHook, storeHook } from '../../repo/hooks.js';
import {
  checkObjectId,
  checkOid,
  checkRefName,
  nonFastForward,
  type FetchOptions,
  type ObjectKind,
  type Remote,
  type RefUpdate,
  type SendResult,
  type UpdateRefsOptions,
  type WireObject,
} from '../remote.js';

/** Received bytes between index publications: bounds what an interruption can lose. */
const PUBLISH_EVERY = 64 * 1024 * 1024;
/** Received bytes being written or hashed at once. */
const IN_FLIGHT_BYTES = 32 * 1024 * 1024;
/** Files proven whole on receipt that are remembered (beyond it: read back by verify instead). */
const MAX_PROVEN = 100_000;
const ZERO_OID = '0'.repeat(40);

export interface StoreRemoteOptions {
  display?: string;
  /** How long a receive waits for the store's writer lock (default: the store's own default). */
  lockTimeoutMs?: number;
}

export class StoreRemote implements Remote {
  /** send() re-hashes every object and rejects a mismatch. */
  readonly verifiesReceived = true;
  readonly releasesSent = true;
  /** Buffers for received object data: the server decodes into them, send() hands them back. */
  readonly pool = new BufferPool();
  /** Runs of received chunks hashed on the worker (receipt.ts); it spans uploads. */
  private receipt: ReceiptHasher | undefined;
  /** An upload is using `receipt`. */
  private receiptBusy = false;
  /** Stored files whose bytes were hashed to their oid on arrival: updateRefs' verify skips reading them. */
  private readonly wholeOnReceipt = new Set<string>();

  private constructor(
    readonly store: Store,
    readonly display: string,
    private readonly lockTimeoutMs: number | undefined,
  ) {}

  /** Opens the store at `dir` exactly (its workspace or its bare directory), not a parent's. */
  static async open(dir: string, opts: StoreRemoteOptions = {}): Promise<StoreRemote> {
    const abs = path.resolve(dir);
    let store: Store;
    try {
      store = await Store.find(abs);
    } catch {
      throw new MstoreError('ENOTSTORE', `${opts.display ?? abs} is not an mstore store (create one with 'mstore init --bare ${abs}')`);
    }
    if (store.dir !== abs && store.workspace !== abs) {
      throw new MstoreError('ENOTSTORE', `${opts.display ?? abs} is not an mstore store (it is inside ${store.workspace ?? store.dir})`);
    }
    await store.sweepIncoming();
    return new StoreRemote(store, opts.display ?? abs, opts.lockTimeoutMs);
  }

  listRefs(): Promise<Map<string, string>> {
    return localRefs(this.store);
  }

  async missing(kind: ObjectKind, ids: string[]): Promise<string[]> {
    for (const id of ids) checkObjectId(kind, id);
    const index = this.store.index;
    if (kind === 'chunk') return ids.filter((id) => !index.hasChunk(Buffer.from(id, 'hex')));
    if (kind === 'file') return ids.filter((id) => !index.hasContent(Buffer.from(id, 'hex')));
    if (kind === 'recipe') throw new MstoreError('EBADINPUT', 'recipes are asked for as files');
    return gitObjects(this.store.gitdir).absent(ids);
  }

  /**
   * Receives without the store lock (a slow sender never blocks another writer): into a staged
   * sink, which takes the lock only to publish what arrived, every PUBLISH_EVERY bytes and at
   * the end (docs/protocol.md §2.4).
   */
  async send(objects: AsyncIterable<WireObject>, onBytes?: (n: number) => void): Promise<SendResult> {
    const store = this.store;
    const { sink, done } = await store.stagedSink(PUBLISH_EVERY, this.lockTimeoutMs);
    // The shared receipt spans the requests of one push; a second upload at once gets its own.
    const shared = !this.receiptBusy;
    if (shared) this.receiptBusy = true;
    try {
      let stored = 0;
      let bytes = 0;
      const receipt = shared ? (this.receipt ??= new ReceiptHasher(store.hasher)) : new ReceiptHasher(store.hasher);
      const inFlight = new InFlight(IN_FLIGHT_BYTES);
      let proven: string[] = [];
      const recipes: ArrivedRecipe[] = [];
      const publish = async (): Promise<void> => {
        await inFlight.drain();
        await sink.publish();
        if (this.wholeOnReceipt.size + proven.length > MAX_PROVEN) this.wholeOnReceipt.clear();
        for (const oid of proven) this.wholeOnReceipt.add(oid);
        proven = [];
      };
      try {
        for await (const o of objects) {
          checkObjectId(o.kind, o.id);
          checkObject(o);
          bytes += o.data.length;
          onBytes?.(o.data.length);
          if (o.kind === 'chunk') {
            const hashed = receipt.add(o.id, o.data);
            const written = sink.addChunk(Buffer.from(o.id, 'hex'), o.data);
            if (written) stored++;
            const data = o.data;
            await inFlight.add(
              Promise.all([hashed, written]).finally(() => {
                this.pool.release(data);
                o.release?.();
              }),
              data.length,
            );
          } else if (o.kind === 'file') {
            const oid = Buffer.from(o.id, 'hex');
            const chunks = decodeManifest(o.data);
            const verdict = await receipt.end(o.id, chunks.map((c) => c.id.toString('hex')));
            if (verdict === 'mismatch') throw new MstoreError('ECORRUPT', `file manifest ${o.id}: the chunks it lists arrived in order and hash to another file`);
            if (sink.hasFile(oid)) continue;
            let size = 0;
            for (const c of chunks) {
              if (!sink.hasChunk(c.id)) {
                throw new MstoreError('EBADINPUT', `file manifest ${o.id} lists chunk ${c.id.toString('hex')}, which neither ${this.display} nor this upload holds`);
              }
              size += c.length;
            }
            if (verdict === 'whole') proven.push(o.id);
            await sink.addFile(oid, size, Buffer.from(o.data));
            stored++;
          } else if (o.kind === 'recipe') {
            // Taken in at the end: they are proven from what the store holds, the files they read published.
            recipes.push({ oid: o.id, record: Buffer.from(o.data), display: `recipe ${o.id}` });
          } else {
            const nul = o.data.indexOf(0);
            const type = o.data.subarray(0, nul).toString('latin1').split(' ')[0] as GitType;
            // addGitObject skips what the store has (one presence check per object, not two)
            const before = sink.newGitObjects;
            await sink.addGitObject(type, o.data.subarray(nul + 1), o.id);
            if (sink.newGitObjects === before) continue;
            stored++;
          }
          if (sink.unpublishedBytes >= PUBLISH_EVERY) await publish();
        }
        await publish();
        if (recipes.length) {
          const taken = await takeRecipes(store, sink, recipes, (fn) => store.withLock('receive', fn, this.lockTimeoutMs));
          proven.push(...taken);
          stored += taken.length;
          await publish();
        }
      } catch (e) {
        const badData = e instanceof MstoreError && (e.code === 'ECORRUPT' || e.code === 'EBADINPUT' || e.code === 'EBADNAME');
        // Bad data: drop what this upload has not yet published. A broken connection:
        // keep every object that arrived whole, so the rerun sends only the rest.
        await inFlight.drain();
        receipt.reset();
        await sink.abandon(!badData);
        throw e;
      }
      return { objects: stored, bytes };
    } finally {
      if (shared) this.receiptBusy = false;
      await done();
    }
  }

  async *fetch(kind: ObjectKind, asked: string[], opts: FetchOptions = {}): AsyncGenerator<WireObject> {
    for (const id of asked) checkObjectId(kind, id);
    const ids = [...new Set(asked)]; // each object once, as remote.ts promises
    const store = this.store;
    if (kind === 'git') {
      for (const id of ids) {
        let o: GitObject;
        try {
          o = await gitObjects(store.gitdir).get(id);
        } catch {
          throw new MstoreError('EMISSING', `${this.display} has no git object ${id}`);
        }
        const content = o.content;
        const data = Buffer.concat([Buffer.from(`${o.type} ${content.length}\0`, 'latin1'), content]);
        yield { kind, id, data };
      }
      return;
    }
    if (kind === 'recipe') throw new MstoreError('EBADINPUT', 'recipes are fetched as files');
    if (kind === 'file') {
      for (const id of ids) {
        const f = store.index.file(Buffer.from(id, 'hex'));
        const record = f ? undefined : store.index.recipe(Buffer.from(id, 'hex'));
        if (record) {
          yield { kind: 'recipe', id, data: record };
          continue;
        }
        if (!f) throw new MstoreError('EMISSING', `${this.display} has no file ${id}`);
        yield { kind, id, data: encodeManifest(f.chunks) };
      }
      return;
    }
    const handles = new Map<string, FileHandle>();
    // Chunks are read from packs: hold the store's shared lock so that a gc there waits.
    const release = await store.readLock('fetch', this.lockTimeoutMs);
    try {
      for (const id of ids) {
        const loc = store.index.chunk(Buffer.from(id, 'hex'));
        if (!loc) throw new MstoreError('EMISSING', `${this.display} has no chunk ${id}`);
        // Not re-hashed here: the receiver (pull.ts) re-hashes every chunk it gets, and that
        // check is the one that counts (a damaged chunk fails the pull naming it).
        const data = opts.pool?.get(loc.length) ?? Buffer.allocUnsafe(loc.length);
        let bytesRead: number;
        try {
          let fh = handles.get(loc.pack);
          if (!fh) handles.set(loc.pack, (fh = await open(packPath(store.packsDir, loc.pack), 'r')));
          ({ bytesRead } = await fh.read(data, 0, loc.length, loc.offset));
        } catch (e) {
          // Named by pack and chunk, never by path: this message may travel to a client.
          throw new MstoreError('ECORRUPT', `pack ${loc.pack} of ${this.display} cannot be read (${(e as NodeJS.ErrnoException).code ?? 'read error'}; chunk ${id})`);
        }
        if (bytesRead !== loc.length) throw new MstoreError('ECORRUPT', `pack ${loc.pack} of ${this.display} is truncated (chunk ${id})`);
        yield { kind, id, data };
      }
    } finally {
      for (const fh of handles.values()) await fh.close();
      await release();
    }
  }

  async updateRefs(updates: RefUpdate[], opts: UpdateRefsOptions = {}): Promise<void> {
    const seen = new Set<string>();
    for (const u of updates) {
      checkRefName(u.ref);
      if (u.old !== null) checkOid(u.old, `${u.ref} old value`);
      if (u.new !== null) checkOid(u.new, `${u.ref} new value`);
      if (seen.has(u.ref)) throw new MstoreError('EBADINPUT', `${u.ref} appears twice in one update`);
      seen.add(u.ref);
    }
    const store = this.store;
    const moved = await store.withLock(
      'receive',
      async () => {
        const repo = store.repo;
        const gitdir = store.gitdir;
        // A ref already at its new value needs no move: a rerun of a push killed after its
        // moves were recorded finds them made by this lock's taker (finishLastOperation),
        // after it listed the refs.
        const todo: RefUpdate[] = [];
        for (const u of updates) {
          const cur = (await repo.readRef(u.ref)) ?? null;
          if (cur === u.new) continue;
          todo.push(u);
          if (cur !== u.old) {
            throw nonFastForward(u.ref, cur === null ? `${this.display} no longer has it` : `${this.display} has it at ${cur.slice(0, 12)} now${u.old ? `, not ${u.old.slice(0, 12)}` : ''}`);
          }
        }
        if (!todo.length) return [];
        // The objects of every new value must all be here (dependencies of existing refs are).
        const current = await this.listRefs();
        const haves = [...current.values()];
        const news = todo.flatMap((u) => (u.new === null ? [] : [u.new]));
        // One walk for all the new values; only when it fails are they walked one by one, to name the ref.
        if (!(await reachableObjects(gitdir, news, haves).then(() => true, () => false))) {
          for (const u of todo) {
            if (u.new === null) continue;
            try {
              await reachableObjects(gitdir, [u.new], haves);
            } catch (e) {
              throw new MstoreError('EMISSING', `${u.ref}: ${this.display} lacks objects of ${u.new.slice(0, 12)} (${(e as Error).message.split('\n')[0]}); send them first`);
            }
          }
        }
        if (!opts.force) {
          for (const u of todo) {
            if (u.old === null) continue;
            if (u.new === null) throw nonFastForward(u.ref, 'deleting a ref on a remote needs --force');
            if (u.ref.startsWith('refs/tags/')) throw nonFastForward(u.ref, `the tag already exists at ${u.old.slice(0, 12)} and tags do not move`);
            const ahead = await descendsFrom(gitdir, u.new, u.old);
            if (!ahead) throw nonFastForward(u.ref, `${u.new.slice(0, 12)} does not descend from ${u.old.slice(0, 12)}`);
          }
        }
        // Every version a ref will newly name is re-read byte for byte before any ref moves.
        const named = new Set<string>();
        for (const [ref, v] of current) if (!ref.startsWith('refs/notes/')) named.add(await repo.peelToCommit(v).catch(() => v));
        const commits: Roots = new Map();
        for (const u of todo) {
          if (u.new === null || u.ref.startsWith('refs/notes/')) continue;
          const commit = await repo.peelToCommit(u.new).catch(() => undefined);
          if (!commit) throw new MstoreError('EBADINPUT', `${u.ref}: ${u.new.slice(0, 12)} does not lead to a version (not a commit)`);
          if (!named.has(commit)) commits.set(commit, [...(commits.get(commit) ?? []), u.ref]);
        }
        if (commits.size) {
          const v = await verify(store, { commits, wholeOnReceipt: this.wholeOnReceipt });
          if (!v.ok) throw new MstoreError('ECORRUPT', `${this.display}: the pushed versions failed verification (${v.problems[0].message}${v.problems.length > 1 ? `; ${v.problems.length - 1} more` : ''}); no ref moved`);
        }
        const moves: RefMove[] = todo.map((u) => ({ ref: u.ref, value: u.new, expect: u.old }));
        return moveRefs(store, moves, 'push', { message: opts.message });
      },
      this.lockTimeoutMs,
    );
    // Like git, after the refs moved and outside the lock (a deploy hook may take a while
    // and write to the store itself); its failure does not undo the push.
    if (moved.length) await this.runPostReceive(moved.map((e) => `${e.old ?? ZERO_OID} ${e.new ?? ZERO_OID} ${e.ref}`), opts.onRemoteOutput);
  }

  /** Runs hooks/post-receive, if installed and executable, with "old new ref" lines on stdin. */
  private async runPostReceive(lines: string[], onLine?: (line: string) => void): Promise<void> {
    const hook = await storeHook(this.store.dir, 'post-receive');
    if (!hook) return;
    const run = await runHook(hook, {
      input: lines.join('\n') + '\n',
      cwd: this.store.dir,
      // The shipped hook runs `mstore deploy apply` with this very CLI.
      env: { ...process.env, MSTORE_DIR: this.store.dir, GIT_DIR: this.store.gitdir, MSTORE_NODE: process.execPath, MSTORE_CLI: path.join(packageRoot(), 'dist', 'bundle', 'cli.js') },
      onLine,
    });
    if (run.startError) onLine?.(`post-receive hook could not run: ${run.startError.message}`);
    else if (run.code !== 0) onLine?.(`post-receive hook exited ${run.signal ?? run.code}`);
  }

  deployStatus(): Promise<DeployStatus> {
    return deployStatus(this.store);
  }

  async close(): Promise<void> {
    await this.store.close();
  }
}
