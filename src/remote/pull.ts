/**
 * `pull` (and clone): fetch versions from a remote and move local refs, for every transport.
 * Under the store lock: git objects first (walked from the wanted refs, each re-hashed and
 * written atomically), then the missing chunks into fsynced packs indexed as they fill (an
 * interrupted pull keeps them), then the manifests, then a full verify of every new version
 * (files whose chunks arrived as one run in order were hashed whole on arrival, receipt.ts,
 * and are not read back), then the refs (tags only created, heads only fast-forwarded, unless `force`).
 */
import type { Store } from '../repo/store.js';
import { MstoreError } from '../lib/errors.js';
import { decodeManifest } from '../repo/index-db.js';
import { contentOf, type Roots } from '../repo/reach.js';
import { hasObject, descendsFrom } from '../repo/git-walk.js';
import { GITLINK_MODE, objectLinks, unwrapObject } from '../format/git-links.js';
import { GitObjectStage } from '../repo/git-stage.js';
import { moveRefs, type RefLogEntry, type RefMove } from '../repo/reflog.js';
import { verify } from '../ops/integrity/verify.js';
import { takeRecipes } from '../ops/recipe-intake.js';
import { parseRecipe, recipeInputs } from '../format/recipe.js';
import { checkObject } from './wire.js';
import { ReceiptHasher } from '../repo/receipt.js';
import { BufferPool } from '../lib/buffer-pool.js';
import { InFlight } from '../lib/in-flight.js';
import { BATCH_IDS, checkRefName, nonFastForward, type Remote } from './remote.js';
import type { Progress } from '../lib/progress.js';
import { refsFor, parseVersionTag, findRef, localRefs } from '../repo/refs.js';

/** Fetched chunk bytes between index publications. */
const PUBLISH_EVERY = 64 * 1024 * 1024;
/** Fetched bytes being written or hashed at once. */
const IN_FLIGHT_BYTES = 32 * 1024 * 1024;

export interface PullOptions {
  /** Refs or version names to pull; none: every ref of the remote. */
  refs?: string[];
  force?: boolean;
  onProgress?: (p: Progress) => void;
}

export interface PullResult {
  remote: string;
  refs: RefLogEntry[];
  upToDate: boolean;
  skipped: { ref: string; reason: string }[];
  gitObjectsReceived: number;
  filesReceived: number;
  /** Content received as its recipe, proven by rebuilding it here. */
  recipesReceived: number;
  chunksReceived: number;
  bytesReceived: number;
}

export async function pull(store: Store, remote: Remote, opts: PullOptions = {}): Promise<PullResult> {
  return store.withLock('pull', async () => {
    const repo = store.repo;
    const gitdir = store.gitdir;
    const sink = store.sink(PUBLISH_EVERY);
    const remoteRefs = await remote.listRefs();
    for (const [ref, v] of remoteRefs) {
      checkRefName(ref);
      if (!/^[0-9a-f]{40}$/.test(v)) throw new MstoreError('EREMOTE', `${remote.display}: ${ref} has a malformed value`);
    }
    const result: PullResult = { remote: remote.display, refs: [], upToDate: true, skipped: [], gitObjectsReceived: 0, filesReceived: 0, recipesReceived: 0, chunksReceived: 0, bytesReceived: 0 };

    // 1. Git objects: breadth-first from the wanted values, a batch of ids per round trip; they
    // wait in the stage and are written children first when the walk is done (git-stage.ts).
    // Remembered once seen: the walk checks each link, and the stage's publish checks them again.
    const known = new Set<string>();
    const present = async (id: string): Promise<boolean> => {
      if (known.has(id)) return true;
      if (!(await hasObject(gitdir, id))) return false;
      known.add(id);
      return true;
    };
    const fetchClosure = async (starts: string[], shallow = false): Promise<void> => {
      const stage = await GitObjectStage.create(store.tmpDir);
      try {
        await walkInto(stage, starts, shallow);
        await stage.publish(sink, present);
        await sink.flushGit();
      } finally {
        await stage.close();
      }
    };
    const walkInto = async (stage: GitObjectStage, starts: string[], shallow: boolean): Promise<void> => {
      let frontier: string[] = [];
      for (const s of new Set(starts)) if (!(await present(s))) frontier.push(s);
      const seen = new Set(frontier);
      while (frontier.length) {
        const next: string[] = [];
        for (let i = 0; i < frontier.length; i += BATCH_IDS) {
          const batch = frontier.slice(i, i + BATCH_IDS);
          const asked = new Set(batch);
          const got = new Set<string>();
          for await (const o of remote.fetch('git', batch)) {
            if (o.kind !== 'git' || !asked.has(o.id) || got.has(o.id)) throw new MstoreError('EREMOTE', `${remote.display} sent ${o.kind} ${o.id}, which was not asked for`);
            checkObject(o);
            got.add(o.id);
            const framed = unwrapObject(o.data);
            if (typeof framed === 'string') throw new MstoreError('EREMOTE', `${remote.display} sent git object ${o.id}: ${framed}`);
            let links: string[];
            try {
              links = objectLinks(framed.type, framed.content)
                .filter((l) => l.mode !== GITLINK_MODE)
                .map((l) => l.oid);
            } catch (e) {
              throw new MstoreError('EREMOTE', `${remote.display} sent git object ${o.id}: ${(e as Error).message}`);
            }
            await stage.add(o.id, framed.type, framed.content, links);
            result.gitObjectsReceived++;
            if (shallow) continue;
            for (const c of links) {
              if (seen.has(c) || (await present(c))) continue;
              seen.add(c);
              next.push(c);
            }
          }
          const lost = batch.find((id) => !got.has(id));
          if (lost) throw new MstoreError('EREMOTE', `${remote.display} did not send git object ${lost}`);
        }
        frontier = next;
      }
    };

    let want: Map<string, string>;
    if (!opts.refs?.length) want = new Map(remoteRefs);
    else {
      const named = new Set<string>();
      for (const name of opts.refs) {
        const ref = findRef(remoteRefs, name);
        if (!ref) throw new MstoreError('EUNKNOWNREV', `${remote.display} has no ref '${name}'`, { what: name, where: remote.display });
        named.add(ref);
      }
      await fetchClosure([...named].map((r) => remoteRefs.get(r)!));
      // Version tag objects (only them, not what they lead to) to see which travel along.
      await fetchClosure(
        [...remoteRefs].filter(([r]) => parseVersionTag(r)).map(([, v]) => v),
        true,
      );
      const commits = new Set<string>();
      for (const r of named) {
        const c = await repo.peelToCommit(remoteRefs.get(r)!).catch(() => undefined);
        if (c) commits.add(c);
      }
      const peelLocal = async (oid: string): Promise<string | undefined> => {
        const t = await repo.readTagTarget(oid).catch(() => undefined);
        const target = t ?? oid;
        return (await hasObject(gitdir, target)) ? repo.peelToCommit(target).catch(() => undefined) : undefined;
      };
      want = await refsFor(repo, remoteRefs, commits, named, peelLocal);
    }
    const local = await localRefs(store);
    const changed = [...want].filter(([ref, v]) => local.get(ref) !== v);
    await fetchClosure(changed.map(([, v]) => v));

    // 2. Ref moves (checked now that the objects are here; nothing moves before the verify).
    const moves: RefMove[] = [];
    for (const [ref, value] of changed) {
      const cur = local.get(ref);
      if (cur && !opts.force) {
        if (ref.startsWith('refs/tags/')) throw nonFastForward(ref, `this store has the tag at ${cur.slice(0, 12)}, ${remote.display} at ${value.slice(0, 12)}`);
        const ahead = await descendsFrom(gitdir, value, cur);
        if (!ahead) {
          const behind = await descendsFrom(gitdir, cur, value);
          if (behind) {
            result.skipped.push({ ref, reason: 'this store is ahead' });
            continue;
          }
          throw nonFastForward(ref, `this store has ${cur.slice(0, 12)}, which ${remote.display}'s ${value.slice(0, 12)} does not descend from`);
        }
      }
      moves.push({ ref, value, expect: cur ?? null });
    }
    if (!moves.length) return result;
    result.upToDate = false;

    // 3. Content of the versions the moved refs name.
    const commits: Roots = new Map();
    for (const m of moves) {
      if (m.value === null || m.ref.startsWith('refs/notes/')) continue;
      const c = await repo.peelToCommit(m.value).catch(() => undefined);
      if (!c) throw new MstoreError('EREMOTE', `${remote.display}: ${m.ref} does not lead to a version`);
      commits.set(c, [...(commits.get(c) ?? []), m.ref]);
    }
    const content = await contentOf(repo, commits.keys(), (c) => commits.get(c)![0].replace(/^refs\/(tags|heads)\//, ''));
    const needFiles = [...content.keys()].filter((oid) => !store.index.hasContent(Buffer.from(oid, 'hex')));
    const manifests = new Map<string, Buffer>();
    // Content the remote holds as a recipe comes as one (docs/protocol.md): it is proven here by
    // rebuilding it, after the files it reads (fetched too, where this store lacks them).
    const recipes = new Map<string, Buffer>();
    const sizes = new Map([...content].map(([oid, use]) => [oid, use.size]));
    const fetchFiles = async (ids: string[], recipesAllowed: boolean): Promise<void> => {
      const want = new Set(ids);
      for (let i = 0; i < ids.length; i += BATCH_IDS) {
        for await (const o of remote.fetch('file', ids.slice(i, i + BATCH_IDS))) {
          const fresh = want.delete(o.id);
          if (!fresh || (o.kind !== 'file' && !(o.kind === 'recipe' && recipesAllowed))) throw new MstoreError('EREMOTE', `${remote.display} sent ${o.kind} ${o.id}, which was not asked for`);
          checkObject(o);
          (o.kind === 'recipe' ? recipes : manifests).set(o.id, Buffer.from(o.data));
        }
      }
      const lost = [...want][0];
      if (lost) throw new MstoreError('EREMOTE', `${remote.display} did not send the manifest of ${lost}`);
    };
    await fetchFiles(needFiles, true);
    const inputs = new Set<string>();
    for (const [oid, record] of recipes) {
      const recipe = parseRecipe(record, `${remote.display}: recipe ${oid}`);
      if (recipe.size !== sizes.get(oid)) throw new MstoreError('EREMOTE', `${remote.display}: the recipe of ${oid} makes ${recipe.size} bytes, the pointer says ${sizes.get(oid)}`);
      for (const i of recipeInputs(recipe)) {
        // One this store holds as a recipe is rebuilt here (inputsInChunks), not fetched.
        if (manifests.has(i.oid) || store.index.hasContent(Buffer.from(i.oid, 'hex'))) continue;
        inputs.add(i.oid);
        sizes.set(i.oid, i.size);
      }
    }
    await fetchFiles([...inputs], false);
    const needChunks: string[] = [];
    const chunkSet = new Set<string>();
    let total = 0;
    // A file all of whose chunks are fetched now, one run in its own order, is hashed as they
    // arrive (receipt.ts): its first chunk starts a run, its last one ends it.
    const runStarts = new Set<string>();
    const runEnds = new Map<string, { oid: string; ids: string[] }>();
    for (const [oid, m] of manifests) {
      let size = 0;
      const chunks = decodeManifest(m);
      let fresh = 0;
      for (const c of chunks) {
        size += c.length;
        const key = c.id.toString('hex');
        if (chunkSet.has(key) || store.index.hasChunk(c.id)) continue;
        chunkSet.add(key);
        needChunks.push(key);
        total += c.length;
        fresh++;
      }
      if (fresh && fresh === chunks.length) {
        const ids = chunks.map((c) => c.id.toString('hex'));
        runStarts.add(ids[0]);
        runEnds.set(ids[ids.length - 1], { oid, ids });
      }
      if (size !== sizes.get(oid)) throw new MstoreError('EREMOTE', `${remote.display}: the manifest of ${oid} adds up to ${size} bytes, the pointer says ${sizes.get(oid)}`);
    }

    const pool = new BufferPool();
    const receipt = new ReceiptHasher(store.hasher);
    const inFlight = new InFlight(IN_FLIGHT_BYTES);
    const whole = new Set<string>();
    try {
      for (let i = 0; i < needChunks.length; i += BATCH_IDS) {
        const batch = needChunks.slice(i, i + BATCH_IDS);
        const want = new Set(batch);
        for await (const o of remote.fetch('chunk', batch, { pool })) {
          if (o.kind !== 'chunk' || !want.delete(o.id)) throw new MstoreError('EREMOTE', `${remote.display} sent ${o.kind} ${o.id}, which was not asked for`);
          checkObject(o);
          if (runStarts.has(o.id)) receipt.reset();
          const data = o.data;
          const hashed = receipt.add(o.id, data);
          const written = sink.addChunk(Buffer.from(o.id, 'hex'), data);
          await inFlight.add(Promise.all([hashed, written]).finally(() => pool.release(data)), data.length);
          const run = runEnds.get(o.id);
          if (run) {
            const verdict = await receipt.end(run.oid, run.ids);
            if (verdict === 'mismatch') throw new MstoreError('ECORRUPT', `${remote.display}: the manifest of ${run.oid} does not match its chunks (they hash to another file)`);
            if (verdict === 'whole') whole.add(run.oid);
          }
          result.chunksReceived++;
          result.bytesReceived += data.length;
          opts.onProgress?.({ done: result.bytesReceived, total });
          // Packs are sealed and indexed while the next chunks arrive.
          if (sink.unpublishedBytes >= PUBLISH_EVERY) sink.publishBehind();
        }
        if (want.size) throw new MstoreError('EREMOTE', `${remote.display} did not send chunk ${[...want][0]}`);
      }
      await inFlight.drain();
      // Manifests after every chunk they list: a file is present only when whole.
      for (const [oid, m] of manifests) await sink.addFile(Buffer.from(oid, 'hex'), sizes.get(oid)!, m);
      result.filesReceived = sink.newFiles;
      await sink.publish();
      // Recipes once the files they read are in: each rebuilt and hashed to its id, then recorded.
      const taken = await takeRecipes(store, sink, [...recipes].map(([oid, record]) => ({ oid, record, display: `${content.get(oid)!.uses[0]} (from ${remote.display})` })));
      for (const oid of taken) whole.add(oid);
      result.recipesReceived = taken.length;
      await sink.publish();
    } catch (e) {
      // Keep what arrived whole (a rerun fetches only the rest); drop the rest.
      receipt.reset();
      await inFlight.drain();
      await sink.abandon(true);
      throw e;
    }

    // 4. Every new version re-read byte for byte, then the refs.
    const v = await verify(store, { commits, wholeOnReceipt: whole });
    if (!v.ok) throw new MstoreError('ECORRUPT', `the versions pulled from ${remote.display} failed verification (${v.problems[0].message}${v.problems.length > 1 ? `; ${v.problems.length - 1} more` : ''}); no ref moved`);
    result.refs = await moveRefs(store, moves, 'pull', { message: `pull ${remote.display}` });
    return result;
  });
}
