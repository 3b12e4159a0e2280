/**
 * gc safety (issue 3, acceptance 2): a random sequence of commit, tag, rm, restore, prune,
 * consolidate (issue 19: a merged version, kept as recipes, must outlive its base and adapter
 * versions), materialize and gc never
 * removes data a live or restorable version needs; kill -9 of gc at random moments leaves every
 * version intact and the next gc completes.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Store } from '../src/repo/store.js';
import { commit } from '../src/ops/commit.js';
import { createTag } from '../src/ops/tags.js';
import { executeRemoval, restoreRef } from '../src/ops/retention/remove.js';
import { planPrune } from '../src/ops/retention/prune.js';
import { gc } from '../src/ops/retention/gc.js';
import { consolidate } from '../src/ops/consolidate.js';
import { materialize } from '../src/ops/materialize.js';
import { listVersionFiles } from '../src/repo/version-files.js';
import { checkout } from '../src/ops/checkout.js';
import { refRoots } from '../src/repo/reach.js';
import { MstoreError } from '../src/lib/errors.js';
import { PackWriter, ENTRY_CHUNK } from '../src/repo/pack.js';
import { sha256 } from '../src/lib/hashing.js';
import { randomBytes } from 'node:crypto';
import { log } from '../src/ops/inspect.js';
import { verify } from '../src/ops/integrity/verify.js';
import { commitHere, withStoreAt } from './in-process.js';
import { cleanup, git, mstore, mstoreJson, prng, spawnMstore, tmpDir, treeDigest, writeF32, writeSafetensors, type TensorSpec } from './helpers.js';

const digestKey = (m: Map<string, string>): string => JSON.stringify([...m].sort());

async function checkoutDigest(store: Store, rev: string, scratch: string): Promise<string> {
  const dir = path.join(scratch, `co-${rev.slice(0, 12)}-${Date.now()}`);
  await checkout(store, { rev, cwd: scratch, to: dir });
  const d = digestKey(treeDigest(dir));
  rmSync(dir, { recursive: true, force: true });
  return d;
}

const started = Date.now();
const took = (what: string): void => {
  if (process.env.MSTORE_TEST_VERBOSE) console.error(`${what}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
};

test('200+ random operations (consolidations among them): gc never removes what a live or restorable version needs', async () => {
  const seed = Number(process.env.MSTORE_GC_SEED ?? 20261123);
  const rand = prng(seed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)];
  const root = tmpDir('mstore-gcprop-');
  const scratch = path.join(root, 'scratch');
  const ws = path.join(root, 'ws');
  mkdirSync(scratch);
  mkdirSync(ws);
  const savedNow = process.env.MSTORE_NOW;
  let clock = Date.parse('2026-01-01T00:00:00Z');
  const tick = (): void => {
    clock += Math.floor(rand() * 20 * 3_600_000);
    process.env.MSTORE_NOW = new Date(clock).toISOString();
  };
  tick();
  await Store.init(ws).then((s) => s.close());
  const store = await Store.find(ws);
  const seeds = [1, 2, 3, 4, 5, 6];
  let nextSeed = 100;
  const expected = new Map<string, string>(); // commit -> digest of the model files
  const removedAt = new Map<string, number>(); // version name -> time of its removal
  const commitOf = new Map<string, string>(); // version name -> commit
  // Commits a gc may have freed (not live, outside that gc's grace): their restore may fail.
  const mayBeFreed = new Set<string>();
  const counts: Record<string, number> = { commit: 0, tag: 0, rm: 0, restore: 0, restoreRefused: 0, prune: 0, consolidate: 0, materialize: 0, gc: 0, checked: 0, mergedWithoutBase: 0, recipesChecked: 0 };
  const baseOf = new Map<string, string>(); // merged commit -> its base commit
  const liveVersions = async (): Promise<Map<string, string>> => {
    const { roots } = await refRoots(store.repo);
    const out = new Map<string, string>();
    for (const [c, refs] of roots) for (const r of refs) if (/^refs\/tags\/((merged|adapters)\/)?v[0-9]+$/.test(r)) out.set(r.slice(10), c);
    return out;
  };
  try {
    for (let op = 0; op < Number(process.env.MSTORE_GC_OPS ?? 220); op++) {
      tick();
      const live = await liveVersions();
      const r = rand();
      if (r < 0.28 || live.size === 0) {
        // commit: a few tensors change (new chunks), others stay (shared chunks)
        for (let i = 0; i < seeds.length; i++) if (rand() < 0.35) seeds[i] = nextSeed++;
        const tensors: TensorSpec[] = seeds.map((s, i) => ({ name: `layers.${i}.weight`, dtype: 'BF16', shape: [128, 1024], seed: s }));
        writeSafetensors(path.join(ws, 'model.safetensors'), tensors);
        writeFileSync(path.join(ws, 'config.json'), JSON.stringify({ op, seeds }));
        if (rand() < 0.5) writeSafetensors(path.join(ws, 'adapter.safetensors'), [{ name: 'a', dtype: 'BF16', shape: [64, 1024], seed: nextSeed++ }]);
        const c = await commit(store, { cwd: ws, message: `op ${op}`, allowEmpty: true });
        expected.set(c.commit!, digestKey(treeDigest(ws)));
        commitOf.set(c.version!, c.commit!);
        counts.commit++;
      } else if (r < 0.34) {
        await createTag(store, `t${op}`, pick([...live.keys()]));
        counts.tag++;
      } else if (r < 0.36) {
        // materialize: a merged version kept as recipes gets its bytes (its inputs may then go).
        const merged = [...live].filter(([v, c]) => v.startsWith('merged/') && baseOf.has(c));
        if (!merged.length) continue;
        const [v] = pick(merged);
        const done = await materialize(store, v);
        if (done.files.length) counts.materialize++;
      } else if (r < 0.52) {
        const v = pick([...live.keys()]);
        await executeRemoval(store, [v], { reason: 'rm', noBackup: true });
        removedAt.set(v, clock);
        counts.rm++;
      } else if (r < 0.7) {
        // Mostly the latest removal (undo right after a mistake), sometimes an older one.
        const gone = [...removedAt.keys()].filter((v) => !live.has(v)).sort((a, b) => removedAt.get(b)! - removedAt.get(a)!);
        if (!gone.length) continue;
        const v = rand() < 0.7 ? gone[0] : pick(gone);
        try {
          await restoreRef(store, v);
          mayBeFreed.delete(commitOf.get(v)!);
          removedAt.delete(v);
          counts.restore++;
        } catch (e) {
          // Refusing is allowed only when a gc may have freed it, and must say so clearly.
          assert.ok(e instanceof MstoreError && e.code === 'EMISSING', `restore ${v}: ${String(e)}`);
          assert.ok(mayBeFreed.has(commitOf.get(v)!), `restore of ${v} refused although no gc could have freed it: ${(e as Error).message}`);
          counts.restoreRefused++;
          if (process.env.MSTORE_TEST_VERBOSE) console.error(`refused ${v} removed ${((clock - removedAt.get(v)!) / 3.6e6).toFixed(1)} h ago: ${(e as Error).message}`);
        }
      } else if (r < 0.78) {
        const plan = await planPrune(store, { keepLast: 1 + Math.floor(rand() * 3) });
        if (!plan.remove.length) continue;
        await executeRemoval(store, plan.remove.map((v) => v.commit), { reason: 'prune', noBackup: true });
        for (const v of plan.remove) removedAt.set(v.version, clock);
        counts.prune++;
      } else if (r < 0.84) {
        // consolidate: a base with finite weights (the other commits' bytes are random, NaN
        // included), an adapter for some of its layers on a line of its own, merged in-process;
        // its base and adapter may later be removed and collected, the merged version must stay.
        writeF32(path.join(ws, 'model.safetensors'), seeds.map((sd, i): [string, number[], (j: number) => number] => [`layers.${i}.weight`, [128, 1024], (j) => Math.sin(j * 0.001 + sd)]));
        writeFileSync(path.join(ws, 'config.json'), JSON.stringify({ op, seeds, finite: true }));
        const b = await commit(store, { cwd: ws, message: `base ${op}`, allowEmpty: true });
        expected.set(b.commit!, digestKey(treeDigest(ws)));
        commitOf.set(b.version!, b.commit!);
        const dir = path.join(ws, 'adapter');
        mkdirSync(dir);
        const layers = seeds.map((_, i) => `layers.${i}`).filter(() => rand() < 0.5);
        if (!layers.length) layers.push('layers.0');
        writeF32(
          path.join(dir, 'adapter_model.safetensors'),
          layers.flatMap((m): [string, number[], (j: number) => number][] => [
            [`base_model.model.${m}.lora_A.weight`, [4, 1024], (j) => Math.cos(j + op) * 0.01],
            [`base_model.model.${m}.lora_B.weight`, [128, 4], (j) => Math.sin(j + op) * 0.01],
          ]),
        );
        writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 4, lora_alpha: 8, target_modules: layers }));
        const a = await commit(store, { cwd: ws, paths: ['adapter'], line: 'adapters', message: `adapter ${op}` });
        expected.set(a.commit!, await checkoutDigest(store, a.commit!, scratch));
        commitOf.set(a.version!, a.commit!);
        rmSync(dir, { recursive: true });
        const m = await consolidate(store, { base: b.version!, adapter: a.version!, worker: 'builtin' });
        expected.set(m.commit, await checkoutDigest(store, m.commit, scratch));
        commitOf.set(m.version, m.commit);
        baseOf.set(m.commit, b.commit!);
        counts.consolidate++;
      } else {
        const graceMs = pick([0, 6 * 3_600_000, 2 * 86_400_000]);
        await gc(store, { graceMs });
        counts.gc++;
        const cutoff = clock - graceMs;
        const liveCommits = new Set((await refRoots(store.repo)).roots.keys());
        // Every live version checks out byte for byte.
        for (const c of liveCommits) {
          if (!expected.has(c)) continue;
          assert.is(await checkoutDigest(store, c, scratch), expected.get(c), `live commit ${c} after gc #${counts.gc} (seed ${seed})`);
          counts.checked++;
          // A merged version whose base no ref keeps (a gc may have freed it) still checks out,
          // rebuilt from its recipes where it is kept as them.
          if (baseOf.has(c) && !liveCommits.has(baseOf.get(c)!)) counts.mergedWithoutBase++;
          if (baseOf.has(c) && (await listVersionFiles(store.repo, c)).some((f) => f.kind === 'lfs' && store.index.hasRecipe(Buffer.from(f.oid, 'hex')))) counts.recipesChecked++;
        }
        // Every version removed within the grace period (and not already freed) checks out too.
        for (const [v, at] of removedAt) {
          const c = commitOf.get(v)!;
          if (liveCommits.has(c)) continue;
          if (at >= cutoff && !mayBeFreed.has(c)) {
            assert.is(await checkoutDigest(store, c, scratch), expected.get(c), `restorable ${v} after gc #${counts.gc} (seed ${seed})`);
            counts.checked++;
          } else mayBeFreed.add(c);
        }
      }
    }
    // A last gc with no grace keeps exactly what refs reach, and fsck agrees.
    await gc(store, { graceMs: 0 });
    for (const c of (await refRoots(store.repo)).roots.keys()) {
      if (expected.has(c)) assert.is(await checkoutDigest(store, c, scratch), expected.get(c));
    }
    await store.close();
    const fsck = mstoreJson<{ ok: boolean; problems: string[]; unreachable: { chunks: number } }>(ws, ['fsck']);
    assert.ok(fsck.ok, fsck.problems.join('; '));
    assert.is(fsck.unreachable.chunks, 0, 'gc --grace 0 leaves no unreachable chunk');
    assert.is(git(path.join(ws, '.mstore/git'), ['fsck', '--strict']).code, 0);
    // The sequence really exercised every operation.
    for (const k of ['commit', 'tag', 'rm', 'restore', 'prune', 'consolidate', 'materialize', 'gc']) assert.ok(counts[k] > 0, `no ${k} in the sequence: ${JSON.stringify(counts)}`);
    assert.ok(counts.gc >= 20 && counts.checked >= 100 && counts.mergedWithoutBase > 0 && counts.recipesChecked > 0, JSON.stringify(counts));
    if (process.env.MSTORE_TEST_VERBOSE) console.error(`gc property test (seed ${seed}): ${JSON.stringify(counts)}`);
    took('property test');
  } finally {
    await store.close();
    if (savedNow === undefined) delete process.env.MSTORE_NOW;
    else process.env.MSTORE_NOW = savedNow;
    cleanup(root);
  }
});

test('kill -9 of gc at random moments leaves every version intact; the next gc completes', async () => {
  const rand = prng(Number(process.env.MSTORE_GC_SEED ?? 7));
  const root = tmpDir('mstore-gckill-');
  const ws = path.join(root, 'ws');
  mkdirSync(ws);
  try {
    assert.is(mstore(ws, ['init']).code, 0);
    const seeds = Array.from({ length: 8 }, (_, i) => i + 1);
    let next = 100;
    const expected = new Map<string, string>();
    // Set-up and checks run through the library in this process (a CLI start each would be
    // most of the test's time); the store is closed again before each gc is started and killed.
    const commitOne = async (i: number): Promise<void> => {
      for (let k = 0; k < 3; k++) seeds[Math.floor(rand() * seeds.length)] = next++;
      writeSafetensors(path.join(ws, 'model.safetensors'), seeds.map((s, j) => ({ name: `l.${j}`, dtype: 'BF16', shape: [512, 2048], seed: s })));
      writeFileSync(path.join(ws, 'config.json'), JSON.stringify({ i }));
      const r = await commitHere(ws, `c${i}`);
      expected.set(r.version!, digestKey(treeDigest(ws)));
    };
    const versions = (): Promise<string[]> => withStoreAt(ws, async (s) => (await log(s)).entries.map((e) => e.version!));
    const removeOldest = async (): Promise<void> => {
      const vs = await versions();
      await withStoreAt(ws, (s) => executeRemoval(s, [vs[vs.length - 1]], { reason: 'rm', noBackup: true }));
    };
    for (let i = 0; i < 4; i++) await commitOne(i);
    // The kill moments spread over what an uncrashed gc of this shape takes here (fixed times
    // would land in node's start-up on a fast machine and miss gc's work on a slow one).
    await commitOne(99);
    await removeOldest();
    const t0 = performance.now();
    assert.is(mstore(ws, ['gc', '--grace', '0']).code, 0, 'an uncrashed gc');
    let gcMs = performance.now() - t0;
    const packsOf = (): string => {
      const dir = path.join(ws, '.mstore', 'packs');
      return readdirSync(dir).flatMap((d) => readdirSync(path.join(dir, d))).sort().join(',');
    };
    let kills = 0;
    let finished = 0;
    let inWindow = 0;
    for (let round = 0; kills < 20 && round < 60; round++) {
      // New garbage each round: a new version, the oldest live one removed.
      await commitOne(100 + round);
      await removeOldest();
      const refsBefore = git(path.join(ws, '.mstore/git'), ['for-each-ref']).stdout;
      const packsBefore = packsOf();
      const started = performance.now();
      const child = spawnMstore(ws, ['gc', '--grace', '0']);
      const exited = new Promise<string>((resolve) => child.on('exit', (code, sig) => resolve(sig ?? String(code))));
      // Every fifth kill waits for gc's first change to the packs (on a loaded machine gc can run
      // past the measured range, and every timed kill would land before its critical window).
      const watch = kills % 5 === 4;
      const delay = watch ? -1 : Math.floor(((kills % 10) + rand()) / 10 * gcMs);
      const when = watch ? 'at the first pack change' : `at ${delay} ms`;
      const timer = watch ? undefined : setTimeout(() => child.kill('SIGKILL'), delay);
      if (watch) {
        let running = true;
        void exited.then(() => (running = false));
        while (running && packsOf() === packsBefore) await new Promise((r) => setTimeout(r, 1));
        child.kill('SIGKILL');
      }
      const how = await exited;
      clearTimeout(timer);
      if (how === 'SIGKILL') {
        kills++;
        // Inside gc's critical window: it had written or removed packs (refs never move in gc).
        if (packsOf() !== packsBefore) inWindow++;
      } else {
        assert.is(how, '0', 'an uninterrupted gc succeeds');
        finished++;
        gcMs = performance.now() - started; // the range follows what a gc of this store takes now
      }
      // The store is the same: refs unchanged, every live version verifies and checks out byte for byte.
      assert.is(git(path.join(ws, '.mstore/git'), ['for-each-ref']).stdout, refsBefore, `refs after kill ${when}`);
      const v = await withStoreAt(ws, (s) => verify(s));
      assert.ok(v.ok, `verify after kill ${when}: ${v.problems.map((p) => p.message).join('; ')}`);
      // verify re-hashed every byte above; checkouts compare with the committed trees now and then.
      if (round % 5 !== 4) continue;
      await withStoreAt(ws, async (s) => {
        for (const version of await versions()) {
          assert.is(await checkoutDigest(s, version, root), expected.get(version), `${version} after kill ${when}`);
        }
      });
    }
    process.stdout.write(`\n  gc kill test: uncrashed gc ${gcMs.toFixed(0)} ms; ${kills} kills, ${inWindow} after gc had changed the packs, ${finished} finished first\n`);
    assert.ok(inWindow >= 1, `no kill landed after gc began to change the packs (${kills} kills over ${gcMs.toFixed(0)} ms)`);
    took('kill test');
    assert.ok(kills >= 20, `only ${kills} kills landed while gc ran (${finished} finished first)`);
    // The next gc completes and leaves a clean store with no leftovers.
    const last = mstore(ws, ['gc', '--grace', '0']);
    assert.is(last.code, 0, last.stderr);
    for (const e of mstoreJson<{ version: string }[]>(ws, ['log'])) {
      const dir = path.join(root, `co-final-${e.version}`);
      const co = mstore(ws, ['checkout', e.version, '--to', dir]);
      assert.is(co.code, 0, `${e.version} after the last gc: ${co.stderr} (gc said: ${last.stdout})`);
      assert.is(digestKey(treeDigest(dir)), expected.get(e.version), `${e.version} after the last gc`);
    }
    const fsck = mstoreJson<{ ok: boolean; problems: string[]; unreachable: { chunks: number } }>(ws, ['fsck']);
    assert.ok(fsck.ok, fsck.problems.join('; '));
    assert.is(fsck.unreachable.chunks, 0);
    // ...and no leftovers: the killed gcs' temporaries are gone, the workspace reads as clean.
    assert.equal(readdirSync(path.join(ws, '.mstore/tmp')), [], 'temporaries left in .mstore/tmp after the last gc');
    assert.is(mstore(ws, ['status']).code, 0);
  } finally {
    cleanup(root);
  }
});

test('gc whose rewritten pack comes out identical to a duplicate pack an interrupted gc left keeps it (no unlink of the new pack)', async () => {
  // The state a gc killed between its index switch and its unlink leaves once re-indexed:
  // the same chunk X in two packs, N = [X] (dead: the index points elsewhere) and Q = [X, Y]
  // with Y dead. Rewriting Q yields [X]: the same table as N, hence the same pack id and file.
  const root = tmpDir('mstore-gcdup-');
  const ws = path.join(root, 'ws');
  mkdirSync(ws);
  const savedNow = process.env.MSTORE_NOW;
  delete process.env.MSTORE_NOW;
  const store = await Store.init(ws);
  try {
    const x = randomBytes(5000);
    const y = randomBytes(7000);
    const q = new PackWriter(store.tmpDir, store.packsDir, 1 << 30);
    await q.add(ENTRY_CHUNK, sha256(x), x);
    await q.add(ENTRY_CHUNK, sha256(y), y);
    const [packQ] = await q.finish();
    const n = new PackWriter(store.tmpDir, store.packsDir, 1 << 30);
    await n.add(ENTRY_CHUNK, sha256(x), x);
    const [packN] = await n.finish();
    store.index.recordPacks([packN], { files: [] });
    store.index.recordPacks([packQ], { files: [] }); // X's row now points at Q
    assert.is(store.index.chunk(sha256(x))!.pack, packQ.id);
    writeFileSync(path.join(ws, 'a.bin'), x); // a single-chunk file whose chunk is X: commit stores only its manifest
    const c = await commit(store, { cwd: ws, message: 'needs X' });
    await new Promise((r) => setTimeout(r, 5)); // the packs are older than "now - 0"
    const r = await gc(store, { graceMs: 0 });
    assert.is(r.packs.removed + r.packs.rewritten, 2, JSON.stringify(r.packs));
    assert.is(store.index.chunk(sha256(x))!.pack, packN.id, 'the rewrite of Q is byte for byte pack N');
    const dir = path.join(root, 'out');
    await checkout(store, { rev: c.commit!, cwd: root, to: dir });
    assert.equal(treeDigest(dir), treeDigest(ws));
  } finally {
    await store.close();
    if (savedNow !== undefined) process.env.MSTORE_NOW = savedNow;
    cleanup(root);
  }
});

test.run();
