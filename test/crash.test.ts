/**
 * Crash safety, through the real CLI: `kill -9` of a commit at random moments spread over
 * the whole commit (node startup included) never leaves the store unable to check out an
 * earlier version byte for byte, real git finds the repository sound, and the next commit
 * succeeds. A checkout killed while it writes into the workspace leaves nothing that
 * status or commit pick up, and a re-run completes.
 *
 * The kill moments are random; the seed is printed and MSTORE_CRASH_SEED=<n> replays a run.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { cleanup, git, layerTensors, mstore, prng, spawnMstore, tmpDir, treeDigest, writeModelDir, writeSafetensors } from './helpers.js';
import { withStoreAt } from './in-process.js';
import { checkout } from '../src/ops/checkout.js';
import { log } from '../src/ops/inspect.js';

/** 6 BF16 tensors of 2048 x 2048: 48 MiB of incompressible data per version. */
const BIG_TENSORS = 6;
const KILLS = 22;
/** After this many killed commits in a row, one commit is let through ("the next commit succeeds"). */
const FINISH_EVERY = 7;
/**
 * Versions checked out after each kill: the oldest (v001), the newest, and one more in
 * rotation, so that every version is checked every few kills; after the last commit, all.
 * (All of them after every kill costs ~0.6 s per version per kill on 2 cores.)
 */
const CHECKS_PER_KILL = 3;

const SEED = Number(process.env.MSTORE_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));


interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Waits for a child started with piped stdout/stderr; collects both. */
function collect(child: ReturnType<typeof spawn>, t0: number, onClose?: () => void): Promise<Exit> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      onClose?.();
      resolve({ code, signal, stdout, stderr, ms: performance.now() - t0 });
    });
  });
}

/** Runs mstore; with `killAfterMs`, SIGKILLs it that long after the spawn (if still running). */
function runMstore(cwd: string, args: string[], killAfterMs?: number): Promise<Exit> {
  const t0 = performance.now();
  const child = spawnMstore(cwd, args);
  const timer = killAfterMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), killAfterMs);
  return collect(child, t0, () => timer && clearTimeout(timer));
}

function digestObj(d: Map<string, string>): Record<string, string> {
  return Object.fromEntries([...d].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

const isTemp = (p: string): boolean => path.posix.basename(p).startsWith('.mstore-tmp-');

/** treeDigest without checkout temporaries (what a version of the directory can hold). */
function digestWithoutTemps(dir: string): Map<string, string> {
  const d = treeDigest(dir);
  for (const p of [...d.keys()]) if (isTemp(p)) d.delete(p);
  return d;
}

function tempsIn(dir: string): string[] {
  return [...treeDigest(dir).keys()].filter(isTemp);
}

/** Writes workspace state `n`: every tensor of big.safetensors new, small files changed. */
function writeState(ws: string, n: number): void {
  writeModelDir(ws, { tensors: layerTensors(2, 256, 512, 5000 + n * 10), step: n });
  writeSafetensors(path.join(ws, 'big.safetensors'), layerTensors(BIG_TENSORS, 2048, 2048, 100_000 + n * 100));
  writeFileSync(path.join(ws, 'notes.txt'), `state ${n}\n`);
}

/** Version tags in the store (refs/tags/vNNN), read by real git (cheaper than a node start). */
function versionTags(ws: string): string[] {
  const r = git(path.join(ws, '.mstore', 'git'), ['for-each-ref', '--format=%(refname:short)', 'refs/tags']);
  assert.is(r.code, 0, `git for-each-ref: ${r.stderr}`);
  return r.stdout.split('\n').filter((t) => /^v[0-9]+$/.test(t));
}

/**
 * The given versions check out into fresh directories byte for byte, `git fsck --strict`
 * passes (dangling objects from killed commits are allowed: only the exit code counts), and
 * the log names only recorded versions. Checkout and log run through the library in this
 * process (the killed commits are the CLI's; the checks need no CLI start each).
 */
async function verifyStore(ws: string, scratch: string, recorded: Map<string, Map<string, string>>, versions: string[], ctx: string): Promise<void> {
  await withStoreAt(ws, async (s) => {
    for (const v of versions) {
      const dest = path.join(scratch, `${v}-${Math.random().toString(36).slice(2)}`);
      try {
        await checkout(s, { rev: v, cwd: ws, to: dest }).catch((e: Error) => assert.unreachable(`${ctx}: checkout ${v}: ${e.message}`));
        assert.equal(digestObj(treeDigest(dest)), digestObj(recorded.get(v)!), `${ctx}: ${v} byte for byte`);
      } finally {
        cleanup(dest);
      }
    }
    const fsck = git(path.join(ws, '.mstore', 'git'), ['fsck', '--strict']);
    assert.is(fsck.code, 0, `${ctx}: git fsck --strict: ${fsck.stderr}`);
    const { entries, problems } = await log(s);
    assert.equal(problems, [], `${ctx}: log reads every version record`);
    assert.ok(entries.length >= 2, `${ctx}: log lists versions`);
    for (const e of entries) assert.ok(recorded.has(e.version!), `${ctx}: log names ${e.version}, which no completed commit made`);
  });
}

test(`kill -9 of a commit at ${KILLS} random moments never costs an earlier version (seed ${SEED})`, async () => {
  const ws = tmpDir('mstore-crash-');
  const scratch = tmpDir('mstore-crash-out-');
  const rand = prng(SEED);
  const ctx0 = `seed ${SEED} (MSTORE_CRASH_SEED replays it)`;
  try {
    assert.is(mstore(ws, ['init']).code, 0);
    const recorded = new Map<string, Map<string, string>>();
    writeState(ws, 1);
    const c1 = await runMstore(ws, ['commit', '-m', 'state 1']);
    assert.is(c1.code, 0, c1.stderr);
    recorded.set('v001', treeDigest(ws));
    // The uncrashed duration of a commit that stores a whole new model sets the kill range.
    writeState(ws, 2);
    const c2 = await runMstore(ws, ['commit', '-m', 'state 2']);
    assert.is(c2.code, 0, c2.stderr);
    recorded.set('v002', treeDigest(ws));
    const commitMs = c2.ms;
    // Kill moments: three during node startup, the rest stratified over the commit's duration.
    const early = [0, 15, 60];
    const spread = KILLS - early.length;
    const delays = [...early, ...Array.from({ length: spread }, (_, k) => ((k + rand()) / spread) * commitMs)].sort(() => rand() - 0.5);

    let state = 3;
    let kills = 0;
    let finishedByRace = 0;
    let publishedBeforeKill = 0;
    let sinceFinish = 0;
    let rotate = 0;
    const schedule: string[] = [];
    const prof = { commits: 0, checks: 0 };
    while (kills < KILLS) {
      writeState(ws, state);
      const expected = treeDigest(ws);
      const letFinish = sinceFinish >= FINISH_EVERY;
      const delay = letFinish ? undefined : delays[kills];
      const ctx = `${ctx0}, state ${state}, ${letFinish ? 'uncrashed commit' : `kill after ${delay!.toFixed(0)} of ${commitMs.toFixed(0)} ms`}`;
      const r = await runMstore(ws, ['commit', '-m', `state ${state}`], delay);
      prof.commits += r.ms;
      if (r.signal === 'SIGKILL') {
        kills++;
        sinceFinish++;
        schedule.push(delay!.toFixed(0));
      } else {
        // Uncrashed, or done before the kill landed: the next commit after crashes succeeds
        // (taking over the dead writer's lock and indexing any pack it sealed).
        assert.is(r.code, 0, `${ctx}: exited ${r.code} ${r.signal ?? ''}: ${r.stderr}`);
        if (!letFinish) {
          finishedByRace++;
          delays[kills] = rand() * commitMs * 0.8; // this slot again, earlier
        }
        sinceFinish = 0;
      }
      // Whatever the kill left, a version tag that exists names this state completely.
      const made = versionTags(ws).filter((v) => !recorded.has(v));
      if (r.signal === 'SIGKILL') publishedBeforeKill += made.length;
      else assert.is(made.length, 1, `${ctx}: a completed commit makes one version`);
      assert.ok(made.length <= 1, `${ctx}: one commit made ${made.join(', ')}`);
      for (const v of made) recorded.set(v, expected);

      const all = [...recorded.keys()];
      let check = all;
      if (all.length > CHECKS_PER_KILL) {
        const middle = all.slice(1, -1);
        check = [all[0], all[all.length - 1]];
        for (let i = 0; i < CHECKS_PER_KILL - 2; i++) check.push(middle[rotate++ % middle.length]);
      }
      const t = performance.now();
      await verifyStore(ws, scratch, recorded, check, ctx);
      prof.checks += performance.now() - t;
      state++;
    }
    // At the end, an uncrashed commit succeeds and every version checks out.
    writeState(ws, state);
    const last = await runMstore(ws, ['commit', '-m', 'final', '--json']);
    assert.is(last.code, 0, `${ctx0}: final commit: ${last.stderr}`);
    const lastVersion = (JSON.parse(last.stdout) as { version: string }).version;
    assert.not.ok(recorded.has(lastVersion));
    recorded.set(lastVersion, treeDigest(ws));
    assert.equal(versionTags(ws).sort(), [...recorded.keys()].sort(), 'every version tag is a recorded version');
    await verifyStore(ws, scratch, recorded, [...recorded.keys()], `${ctx0}, final`);
    const st = mstore(ws, ['status', '--json']);
    assert.is(st.code, 0, st.stderr);
    const s = JSON.parse(st.stdout) as { added: string[]; modified: string[]; deleted: string[] };
    assert.equal([s.added, s.modified, s.deleted], [[], [], []], 'workspace clean after the final commit');
    process.stdout.write(
      `\n  crash: seed ${SEED}, commit ${commitMs.toFixed(0)} ms, ${kills} kills at [${schedule.join(', ')}] ms; ` +
        `${publishedBeforeKill} published just before the kill, ${finishedByRace} finished before the kill, ${recorded.size} versions; ` +
        `${(prof.commits / 1000).toFixed(1)} s in commits, ${(prof.checks / 1000).toFixed(1)} s in checks\n`,
    );
  } finally {
    cleanup(ws);
    cleanup(scratch);
  }
});

/**
 * Starts `checkout rev` into the workspace and SIGKILLs it once its temporary for
 * big.safetensors holds at least `minBytes`: certainly mid-write.
 */
async function killCheckoutMidWrite(ws: string, rev: string, minBytes: number): Promise<{ exit: Exit; caught: boolean }> {
  const t0 = performance.now();
  const child = spawnMstore(ws, ['checkout', rev]);
  let caught = false;
  const poll = setInterval(() => {
    for (const name of readdirSync(ws)) {
      if (!name.startsWith('.mstore-tmp-')) continue; // lib/fsutil.ts tmpName: only big.safetensors' grows this large
      try {
        if (statSync(path.join(ws, name)).size >= minBytes) {
          caught = true;
          child.kill('SIGKILL');
          clearInterval(poll);
        }
      } catch {
        // renamed away between readdir and stat
      }
    }
  }, 1);
  const exit = await collect(child, t0, () => clearInterval(poll));
  return { exit, caught };
}

test('a checkout killed mid-write: status and commit ignore its temporaries, a re-run completes byte for byte', async () => {
  const ws = tmpDir('mstore-crash-co-');
  const scratch = tmpDir('mstore-crash-co-out-');
  try {
    assert.is(mstore(ws, ['init']).code, 0);
    writeState(ws, 1);
    assert.is(mstore(ws, ['commit', '-m', 'one']).code, 0);
    const d1 = treeDigest(ws);
    writeState(ws, 2);
    assert.is(mstore(ws, ['commit', '-m', 'two']).code, 0);
    const d2 = treeDigest(ws);

    // 1. Killed while writing v001's big file into a workspace at v002.
    let k = await killCheckoutMidWrite(ws, 'v001', 4 * 1024 * 1024);
    assert.ok(k.caught, `the checkout finished before it could be killed mid-write (${k.exit.code}: ${k.exit.stderr})`);
    assert.is(k.exit.signal, 'SIGKILL');
    assert.ok(tempsIn(ws).length > 0, 'a kill -9 mid-write leaves its temporary behind (the rest of this test is about it)');
    const st = mstore(ws, ['status', '--json']);
    assert.is(st.code, 0, st.stderr);
    const s = JSON.parse(st.stdout) as { added: string[]; modified: string[]; deleted: string[] };
    for (const p of [...s.added, ...s.modified, ...s.deleted]) assert.not.match(p, /\.mstore-tmp-/, `status lists ${p}`);
    // the half-written file never replaced big.safetensors: it is still v002's
    assert.is(treeDigest(ws).get('big.safetensors'), d2.get('big.safetensors'));
    const rerun = mstore(ws, ['checkout', 'v001']);
    assert.is(rerun.code, 0, `re-run of the checkout: ${rerun.stderr}`);
    // treeDigest lists every file, temporaries included: equality means none is left
    assert.equal(digestObj(treeDigest(ws)), digestObj(d1), 'workspace is v001 byte for byte, no temporaries');

    // 2. Killed while writing v002's big file; then commit the half-switched workspace.
    k = await killCheckoutMidWrite(ws, 'v002', 4 * 1024 * 1024);
    assert.ok(k.caught, `the checkout finished before it could be killed mid-write (${k.exit.code}: ${k.exit.stderr})`);
    assert.ok(tempsIn(ws).length > 0);
    const mixed = digestWithoutTemps(ws);
    const c = mstore(ws, ['commit', '-m', 'after a killed checkout', '--json']);
    assert.is(c.code, 0, c.stderr);
    const v = (JSON.parse(c.stdout) as { version: string }).version;
    assert.is(v, 'v003');
    const files = (JSON.parse(mstore(ws, ['show', v, '--json']).stdout) as { files: { path: string }[] }).files.map((f) => f.path);
    for (const p of files) assert.not.match(p, /\.mstore-tmp-/, `commit recorded the temporary ${p}`);
    assert.equal(tempsIn(ws), [], 'commit swept the dead checkout temporaries');
    const dest = path.join(scratch, 'v003');
    assert.is(mstore(ws, ['checkout', v, '--to', dest]).code, 0);
    assert.equal(digestObj(treeDigest(dest)), digestObj(mixed), 'v003 is the workspace as it was, without temporaries');
    const back = mstore(ws, ['checkout', 'v002']);
    assert.is(back.code, 0, back.stderr);
    assert.equal(digestObj(treeDigest(ws)), digestObj(d2), 'workspace is v002 byte for byte');
    const fsck = git(path.join(ws, '.mstore', 'git'), ['fsck', '--strict']);
    assert.is(fsck.code, 0, fsck.stderr);
  } finally {
    cleanup(ws);
    cleanup(scratch);
  }
});

test.run();
