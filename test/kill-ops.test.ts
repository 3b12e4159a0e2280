/**
 * kill -9 of the commands that crash.test.ts, gc.test.ts and the push tests do not kill: pull,
 * clone, rm, prune, restore, import, backup, consolidate, materialize, a push that sends a recipe and `fsck --repair-index`. Each is killed at moments
 * spread over its own measured duration (not fixed times, which land in node's start-up), plus
 * once as soon as it has changed the store's files. After every kill: fsck is clean where it
 * ran, every ref names the version it named before (or the one the command moves it to) and
 * `verify --all` passes; the same command run again completes. Each command's test also proves
 * that at least one kill landed inside its critical window: the store's files had changed (data
 * or ref history written) while its refs had not moved yet.
 *
 * The kill moments are random; the seed is printed and MSTORE_TEST_SEED=<n> replays a run.
 * MSTORE_KILL_ONLY=pull,clone runs only the named commands.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, lstatSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { spawnMstore, cleanup, git, layerTensors, mstore, prng, tmpDir, writeF32, writeModelDir, writeSafetensors } from './helpers.js';
import { withStoreAt } from './in-process.js';
import { verify } from '../src/ops/integrity/verify.js';
import { fsck } from '../src/ops/integrity/fsck.js';

const SEED = Number(process.env.MSTORE_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
const rand = prng(SEED);
/** Kills per command at spread-out moments, plus one as soon as the store changed. */
const SPREAD_KILLS = 3;

const root = tmpDir('mstore-killops-');
/** Every run happens at the same absolute paths (configs hold absolute backup and remote paths). */
const run = path.join(root, 'run');
const fixture = path.join(root, 'fixture');
const ws = path.join(run, 'ws');
const bak = path.join(run, 'bak');
const remote = path.join(run, 'remote');
const tarball = path.join(run, 'all.tar');

function ok(cwd: string, args: string[]): string {
  const r = mstore(cwd, args);
  assert.is(r.code, 0, `mstore ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** refname -> object id, as real git reads them (the truth a kill must not break). */
function refs(gitDir: string): Map<string, string> {
  const r = git(gitDir, ['for-each-ref', '--format=%(refname) %(objectname)']);
  assert.is(r.code, 0, r.stderr);
  return new Map(r.stdout.split('\n').filter(Boolean).map((l) => l.split(' ') as [string, string]));
}

/**
 * Cheap fingerprint of a directory tree for polling: file count, total size, newest mtime, and
 * the files' paths (a rename such as fsck --repair-index's index/ -> index.old/ changes no count,
 * size or mtime, and must still count as a change).
 */
function fingerprint(dir: string): string {
  let n = 0;
  let size = 0;
  let newest = 0;
  const names = createHash('sha1');
  const walk = (d: string): void => {
    let entries: string[];
    try {
      entries = readdirSync(d);
    } catch {
      return;
    }
    for (const name of entries) {
      if (name === 'lock' || name === 'lock.mdb') continue;
      const p = path.join(d, name);
      try {
        const st = lstatSync(p);
        if (st.isDirectory()) walk(p);
        else {
          n++;
          size += st.size;
          newest = Math.max(newest, st.mtimeMs);
          names.update(`${path.relative(dir, p)}\n`);
        }
      } catch {
        // renamed away meanwhile
      }
    }
  };
  walk(dir);
  return `${n}/${size}/${newest}/${names.digest('hex')}`;
}

interface Outcome {
  signal: NodeJS.Signals | null;
  code: number | null;
  stderr: string;
  ms: number;
}

/** Runs mstore in `cwd`; kills it after `afterMs`, or as soon as `watch`'s fingerprint changes. */
function runKilled(cwd: string, args: string[], how: { afterMs?: number; watch?: string }): Promise<Outcome> {
  const t0 = performance.now();
  const child = spawnMstore(cwd, args);
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout.resume();
  const timers: NodeJS.Timeout[] = [];
  if (how.afterMs !== undefined) timers.push(setTimeout(() => child.kill('SIGKILL'), how.afterMs));
  if (how.watch) {
    const first = fingerprint(how.watch);
    const poll = setInterval(() => {
      if (fingerprint(how.watch!) !== first) child.kill('SIGKILL');
    }, 2);
    timers.push(poll);
  }
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      for (const t of timers) clearInterval(t);
      resolve({ code, signal, stderr, ms: performance.now() - t0 });
    });
  });
}

/** A fresh copy of the fixture at the run paths. */
function reset(): void {
  rmSync(run, { recursive: true, force: true });
  cpSync(fixture, run, { recursive: true, verbatimSymlinks: true });
}

/** Three versions of 8 MiB each (new tensors every time), a backup store, a bare remote holding all three, a bundle. */
function buildFixture(): void {
  ok(root, ['init', ws]);
  for (let n = 1; n <= 3; n++) {
    writeModelDir(ws, { tensors: layerTensors(2, 64, 128, 700 + n * 10), step: n });
    writeSafetensors(path.join(ws, 'weights.safetensors'), layerTensors(2, 1024, 2048, 9000 + n * 100));
    ok(ws, ['commit', '-m', `state ${n}`]);
  }
  ok(ws, ['backup', 'add', 'disk', bak]);
  ok(root, ['init', '--bare', remote]);
  ok(ws, ['remote', 'add', 'r', remote]);
  ok(ws, ['push', 'r']);
  ok(ws, ['export', 'v001', 'v002', 'v003', '-o', tarball, '--format', 'bundle']);
  cpSync(run, fixture, { recursive: true, verbatimSymlinks: true });
}

interface Scenario {
  /** Runs after reset(), before the command: what the command starts from. */
  prepare?: () => void;
  cwd: () => string;
  args: string[];
  /** The store whose refs the command moves, and the tree that shows it has written something. */
  store: () => string;
  watch: () => string;
  /** Holds after a kill, before the rerun (beyond fsck, ref truth and verify, which always run). */
  afterKill?: (refsNow: Map<string, string>) => void;
  /** Holds after the rerun completed. */
  done: (refsNow: Map<string, string>) => void;
  /** fsck cannot run before the rerun (e.g. the clone's directory may not be a store yet). */
  fsckAfterRerunOnly?: boolean;
  /**
   * A kill may leave a store that fsck says needs `fsck --repair-index` (every problem it lists
   * says so; nothing is lost, the rerun repairs it): then verify is not run before the rerun.
   */
  mayNeedRepair?: boolean;
  /** The rerun may truthfully find the work done (the next writer finished the interrupted move). */
  rerunDone?: RegExp;
}

const gitDir = (store: string): string => (existsSync(path.join(store, '.mstore')) ? path.join(store, '.mstore', 'git') : path.join(store, 'git'));
let source = new Map<string, string>();

/** Every ref in `now` names what the source store names (ids survive every transfer). */
function subsetOfSource(now: Map<string, string>, ctx: string): void {
  for (const [name, id] of now) {
    if (!name.startsWith('refs/tags/v') && name !== 'refs/heads/latest') continue;
    assert.is(id, source.get(name), `${ctx}: ${name} names the version it names in the source`);
  }
}

/** MSTORE_KILL_ONLY=pull,clone runs only those commands (for working on one of them). */
const ONLY = process.env.MSTORE_KILL_ONLY?.split(',');

async function killScenario(name: string, s: Scenario): Promise<void> {
  if (ONLY && !ONLY.includes(name.split(' ')[0])) return;
  // The uncrashed duration sets the kill range.
  reset();
  s.prepare?.();
  const t0 = performance.now();
  const clean = mstore(s.cwd(), s.args);
  const took = performance.now() - t0;
  assert.is(clean.code, 0, `${name} uncrashed: ${clean.stderr}`);
  s.done(refs(gitDir(s.store())));

  const plan: { afterMs?: number; watch?: boolean }[] = [{ watch: true }];
  for (let k = 0; k < SPREAD_KILLS; k++) plan.push({ afterMs: ((k + rand()) / SPREAD_KILLS) * took });
  let inWindow = 0;
  let killed = 0;
  let needRepair = 0;
  const moments: string[] = [];
  for (const p of plan) {
    reset();
    s.prepare?.();
    const store = s.store();
    const before = fingerprint(s.watch());
    const refsBefore = isStore(store) ? refs(gitDir(store)) : new Map<string, string>();
    const ctx = `${name}, seed ${SEED}, ${p.watch ? 'kill on first write' : `kill after ${p.afterMs!.toFixed(0)} of ${took.toFixed(0)} ms`}`;
    const r = await runKilled(s.cwd(), s.args, { afterMs: p.afterMs, watch: p.watch ? s.watch() : undefined });
    if (r.signal !== 'SIGKILL') {
      assert.is(r.code, 0, `${ctx}: finished before the kill, but failed: ${r.stderr}`);
      moments.push(`${p.watch ? 'w' : p.afterMs!.toFixed(0)}:done`);
      continue;
    }
    killed++;
    moments.push(p.watch ? 'w' : p.afterMs!.toFixed(0));
    const changed = fingerprint(s.watch()) !== before;
    if (!isStore(store)) {
      if (changed) inWindow++; // it had begun to make the store, and no ref exists yet
    } else {
      const now = refs(gitDir(store));
      if (changed && sameRefs(now, refsBefore)) inWindow++;
      subsetOfSource(now, ctx);
      s.afterKill?.(now);
      if (!s.fsckAfterRerunOnly) {
        const f = mstore(store, ['fsck']);
        const errors = `${f.stdout}${f.stderr}`.split('\n').filter((l) => /^(error|mstore: error):/.test(l));
        if (f.code !== 0 && s.mayNeedRepair && errors.length && errors.every((l) => l.includes("run 'mstore fsck --repair-index'"))) {
          needRepair++;
        } else {
          assert.is(f.code, 0, `${ctx}: fsck after the kill: ${f.stdout}${f.stderr}`);
          // verify --all, through the library in this process (the killed command is the CLI's).
          const v = await withStoreAt(store, (st) => verify(st));
          assert.ok(v.ok, `${ctx}: verify --all after the kill: ${v.problems.map((p) => p.message).join('; ')}`);
        }
      }
    }
    const again = mstore(s.cwd(), rerunArgs(s));
    if (!(again.code === 1 && s.rerunDone?.test(again.stderr))) assert.is(again.code, 0, `${ctx}: the rerun: ${again.stderr}`);
    const after = refs(gitDir(s.store()));
    subsetOfSource(after, `${ctx}, rerun`);
    s.done(after);
    const f = await withStoreAt(s.store(), (st) => fsck(st));
    assert.ok(f.ok, `${ctx}: fsck after the rerun: ${f.problems.join('; ')}`);
  }
  process.stdout.write(`\n  ${name}: ${took.toFixed(0)} ms uncrashed; kills at [${moments.join(', ')}]; ${killed} killed, ${inWindow} inside the critical window${needRepair ? `, ${needRepair} left a store fsck said to repair` : ''}\n`);
  assert.ok(killed >= 2, `${name}: only ${killed} kills landed before the command finished`);
  assert.ok(inWindow >= 1, `${name}: no kill landed between the first write and the ref move (seed ${SEED})`);
}

/** A killed clone leaves a store behind (like git's after kill -9): `pull origin` there completes it. */
let rerunArgs = (s: Scenario): string[] => s.args;

/** A store mstore recognises (a killed clone or init may have left less: no config.json yet). */
const isStore = (store: string): boolean =>
  existsSync(path.join(gitDir(store), 'HEAD')) && existsSync(path.join(path.dirname(gitDir(store)), 'config.json'));

function sameRefs(a: Map<string, string>, b: Map<string, string>): boolean {
  return a.size === b.size && [...a].every(([k, v]) => b.get(k) === v);
}

const versionTags = (m: Map<string, string>): string[] => [...m.keys()].filter((k) => /^refs\/tags\/v\d+$/.test(k)).sort();

test.before(() => {
  buildFixture();
  source = refs(path.join(fixture, 'ws', '.mstore', 'git'));
  process.stdout.write(`\n  kill-ops seed ${SEED} (MSTORE_TEST_SEED=${SEED} replays it)\n`);
});
test.after(() => cleanup(root));

const dest = path.join(run, 'dest');
const ALL = ['refs/tags/v001', 'refs/tags/v002', 'refs/tags/v003'];

test('kill -9 of pull: refs name complete versions; the rerun completes', async () => {
  await killScenario('pull', {
    prepare: () => {
      ok(run, ['init', dest]);
      ok(dest, ['remote', 'add', 'r', remote]);
    },
    cwd: () => dest,
    args: ['pull', 'r'],
    store: () => dest,
    watch: () => path.join(dest, '.mstore'),
    done: (now) => assert.equal(versionTags(now), ALL),
  });
});

test('kill -9 of clone: what it leaves is a sound store that `pull origin` completes', async () => {
  // A kill before the remote was recorded leaves a store with nothing in it: the user clones again.
  rerunArgs = (s) => {
    if (isStore(dest) && mstore(dest, ['remote', 'list']).stdout.includes('origin')) return ['-C', dest, 'pull', 'origin'];
    rmSync(dest, { recursive: true, force: true });
    return s.args;
  };
  try {
    await killScenario('clone', {
      cwd: () => run,
      args: ['clone', remote, dest, '--no-checkout'],
      store: () => dest,
      watch: () => dest,
      done: (now) => assert.equal(versionTags(now), ALL),
    });
  } finally {
    rerunArgs = (s) => s.args;
  }
});

test('kill -9 of rm --confirm: the version is either kept or backed up and removed', async () => {
  await killScenario('rm', {
    cwd: () => ws,
    args: ['rm', 'v002', '--confirm'],
    // Killed after recording its moves: the rerun's lock take-over finishes them, and then says so.
    // Killed after making them (before exiting): v002 no longer resolves, and the ref history says why.
    rerunDone: /'v002' is not a version of this store \(already removed\?\)|unknown revision 'v002': v002 was removed by rm at /,
    store: () => ws,
    watch: () => bak,
    afterKill: (now) => {
      // removed only after its backup verified
      if (!now.has('refs/tags/v002')) assert.ok(refs(gitDir(bak)).has('refs/tags/v002'), 'v002 removed without its backup');
    },
    done: (now) => assert.equal(versionTags(now), ['refs/tags/v001', 'refs/tags/v003']),
  });
});

test('kill -9 of prune --execute: nothing removed without its backup; the rerun completes', async () => {
  await killScenario('prune', {
    cwd: () => ws,
    args: ['prune', '--keep-last', '1', '--execute'],
    store: () => ws,
    watch: () => bak,
    afterKill: (now) => {
      const backed = refs(gitDir(bak));
      for (const t of ['refs/tags/v001', 'refs/tags/v002']) if (!now.has(t)) assert.ok(backed.has(t), `${t} removed without its backup`);
    },
    done: (now) => assert.equal(versionTags(now), ['refs/tags/v003']),
  });
});

test('kill -9 of restore: the version is back whole or not at all', async () => {
  await killScenario('restore', {
    prepare: () => ok(ws, ['rm', 'v001', 'v002', '--confirm', '--no-backup']),
    cwd: () => ws,
    args: ['restore', 'v002'],
    rerunDone: /refs\/tags\/v002 exists; nothing to restore/,
    store: () => ws,
    watch: () => path.join(ws, '.mstore'),
    done: (now) => assert.equal(versionTags(now), ['refs/tags/v002', 'refs/tags/v003']),
  });
});

test('kill -9 of import: no tag names an unverified version; the rerun completes', async () => {
  await killScenario('import', {
    prepare: () => ok(run, ['init', dest]),
    cwd: () => dest,
    args: ['import', tarball],
    store: () => dest,
    watch: () => path.join(dest, '.mstore'),
    done: (now) => assert.equal(versionTags(now), ALL),
  });
});

test('kill -9 of backup: the backup store names only verified versions; the rerun completes', async () => {
  await killScenario('backup', {
    cwd: () => ws,
    args: ['backup', 'v001', 'v002', 'v003'],
    store: () => bak,
    watch: () => bak,
    done: (now) => assert.equal(versionTags(now), ALL),
  });
});

test('kill -9 of consolidate (in-process, writing into the store): no merged version, or the whole one; the rerun completes', async () => {
  const made = consolidateInputs();
  const merged = (now: Map<string, string>): string[] => [...now.keys()].filter((k) => k.startsWith('refs/tags/merged/'));
  await killScenario('consolidate', {
    prepare: () => commitInputs(made),
    cwd: () => ws,
    args: ['consolidate', '--base', 'bases/v001', '--adapter', 'adapters/v001', '--worker', 'builtin'],
    store: () => ws,
    watch: () => path.join(ws, '.mstore'),
    afterKill: (now) => assert.ok(merged(now).length <= 1, merged(now).join(', ')),
    done: (now) => assert.ok(merged(now).length >= 1 && merged(now).length <= 2, merged(now).join(', ')),
  });
});

/** Commits the consolidate inputs into the run's workspace: bases/v001 and adapters/v001. */
function commitInputs(made: string): void {
  cpSync(made, ws, { recursive: true });
  ok(ws, ['commit', '-m', 'base', '--line', 'bases', 'base']);
  ok(ws, ['commit', '-m', 'adapter', '--line', 'adapters', 'adapter']);
}

const recipesIn = (store: string): number => (JSON.parse(ok(store, ['fsck', '--json'])) as { index: { recipes: number } }).index.recipes;

test('kill -9 of materialize: the merged version is its recipes or its bytes, never neither; the rerun completes', async () => {
  const made = consolidateInputs();
  await killScenario('materialize', {
    prepare: () => {
      commitInputs(made);
      ok(ws, ['consolidate', '--base', 'bases/v001', '--adapter', 'adapters/v001', '--worker', 'builtin']);
      assert.is(recipesIn(ws), 1, 'kept as its recipe');
    },
    cwd: () => ws,
    args: ['materialize', 'merged/v001'],
    store: () => ws,
    watch: () => path.join(ws, '.mstore'),
    done: () => assert.is(recipesIn(ws), 0, 'stored as bytes'),
  });
});

test('kill -9 of a push that sends a recipe: the remote proves it before recording it, and no ref names it before; the rerun completes', async () => {
  const made = consolidateInputs();
  const mergedOn = (now: Map<string, string>): boolean => now.has('refs/tags/merged/v001');
  await killScenario('push (a recipe)', {
    prepare: () => {
      commitInputs(made);
      ok(ws, ['consolidate', '--base', 'bases/v001', '--adapter', 'adapters/v001', '--worker', 'builtin']);
      rmSync(remote, { recursive: true, force: true });
      ok(run, ['init', '--bare', remote]);
      ok(ws, ['push', remote, 'bases/v001', 'adapters/v001']);
    },
    cwd: () => ws,
    args: ['push', remote, 'merged/v001'],
    store: () => remote,
    watch: () => remote,
    afterKill: (now) => {
      if (mergedOn(now)) assert.is(recipesIn(remote), 1, 'a remote ref names it only once its recipe is recorded');
    },
    done: (now) => {
      assert.ok(mergedOn(now));
      assert.is(recipesIn(remote), 1, 'kept there as its recipe');
    },
  });
});

/** A base of 8 tensors of 4 MiB and a rank-8 adapter on all of them, made once. */
function consolidateInputs(): string {
  const made = path.join(root, 'consolidate-inputs');
  if (!existsSync(made)) {
    mkdirSync(path.join(made, 'base'), { recursive: true });
    mkdirSync(path.join(made, 'adapter'));
    const names = Array.from({ length: 8 }, (_, i) => `model.layers.${i}.mlp.up_proj`);
    writeF32(path.join(made, 'base', 'model.safetensors'), names.map((m, k): [string, number[], (i: number) => number] => [`${m}.weight`, [1024, 1024], (i) => Math.sin(i * 0.001 + k)]));
    writeFileSync(path.join(made, 'base', 'config.json'), JSON.stringify({ model_type: 'test' }));
    writeF32(
      path.join(made, 'adapter', 'adapter_model.safetensors'),
      names.flatMap((m, k): [string, number[], (i: number) => number][] => [
        [`base_model.model.${m}.lora_A.weight`, [8, 1024], (i) => Math.cos(i + k) * 0.01],
        [`base_model.model.${m}.lora_B.weight`, [1024, 8], (i) => Math.sin(i + k) * 0.01],
      ]),
    );
    writeFileSync(path.join(made, 'adapter', 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 8, lora_alpha: 16, target_modules: ['up_proj'] }));
  }
  return made;
}

test('kill -9 of fsck --repair-index: nothing is lost; fsck says what to repair; the rerun completes', async () => {
  await killScenario('fsck --repair-index', {
    mayNeedRepair: true,
    cwd: () => ws,
    args: ['fsck', '--repair-index'],
    store: () => ws,
    watch: () => path.join(ws, '.mstore'),
    done: (now) => assert.equal(versionTags(now), ALL),
  });
});

test.run();
