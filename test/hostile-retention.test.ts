/**
 * Hostile retention policies (issue 20, item 6): a `prune` policy whose every rule keeps
 * nothing (`--keep-last 0`, `--keep-within 0d`, both) is read the way restic's `forget` reads
 * it, as an empty policy: refused with exit 2 and one line naming the option, plan or
 * --execute, the store byte for byte unchanged. A zero rule beside a rule that keeps
 * something is simply that rule (restic: `--keep-last 0 --keep-daily 2` keeps 2 daily).
 * Output (issue 20, item 14, numbers): sizes, rates and durations print as people read them
 * (no 386.19935900561387 B/s), and a size beyond 2^53-1 (a safetensors header length, a
 * git-lfs pointer's size) is never rounded into 9223372036854776000: a header length is named
 * exactly, a pointer is damaged input named with its version and file.
 * gc (issue 20, untested safety): refuses on a store missing a live version's pack or with a
 * broken ref, changes no byte with --dry-run, and runs beside a push in either order; with
 * --grace 0 between a push's send and its ref update, the update is refused (never a ref to
 * missing data); a damaged ref history (garbage, records of the wrong shape, a torn line) leaves every command working.
 * Every refusal goes through test/hostile-helpers.ts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { mkdirSync, readFileSync, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { cleanup, git, layerTensors, mstore, mstoreJson, spawnMstore, tmpDir, writeModelDir } from './helpers.js';
import { expectRefusal, refusedUnchanged, storeBytes } from './hostile-helpers.js';
import { iter, smallVersion } from './remote-acceptance.js';
import { StoreRemote } from '../src/remote/transport/path.js';

interface PlanJson {
  keep: { version: string; reasons: string[] }[];
  remove: { version: string }[];
}

const DATES = ['2025-01-01T00:00:00Z', '2025-01-10T00:00:00Z', '2025-01-20T00:00:00Z'];
const REVS = ['v001', 'v002', 'v003'];

/** A store with three versions ten days apart, and a backup store so that --execute could run. */
function threeVersions(): string {
  const ws = tmpDir('mstore-hostile-retention-');
  writeModelDir(ws, { step: 1 });
  const run = (args: string[], env: Record<string, string> = {}): void => {
    const r = mstore(ws, args, env);
    assert.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  };
  run(['init']);
  DATES.forEach((d, i) => {
    writeFileSync(path.join(ws, 'notes.txt'), `version ${i + 1}`);
    run(['commit', '-m', `v${i + 1}`], { MSTORE_NOW: d });
  });
  run(['backup', 'add', 'disk2', path.join(ws, '..', `${path.basename(ws)}-backup`)]);
  return ws;
}

const ws = threeVersions();

const KEEPS_NOTHING: { args: string[]; names: RegExp; full?: boolean }[] = [
  { args: ['--keep-last', '0'], names: /--keep-last 0/, full: true },
  { args: ['--keep-within', '0d'], names: /--keep-within 0d/, full: true },
  { args: ['--keep-within', '0y0m0d0h'], names: /--keep-within 0y0m0d0h/ },
  { args: ['--keep-last', '0', '--keep-within', '0h'], names: /--keep-last 0.*--keep-within 0h/ },
  { args: ['--keep-last', '0', '--line', 'main'], names: /--keep-last 0/ },
];

for (const { args, names, full } of KEEPS_NOTHING) {
  test(`prune ${args.join(' ')} (plan, --execute, --execute --no-backup): keeps nothing, refused like an empty policy`, () => {
    for (const mode of [[], ['--execute'], ['--execute', '--no-backup']]) {
      const what = `prune ${[...args, ...mode].join(' ')}`;
      const act = (): ReturnType<typeof mstore> => mstore(ws, ['prune', ...args, ...mode]);
      // The whole contract (fsck, every version checked out before and after) where the
      // unfixed command would remove without a backup; the store's bytes everywhere.
      let line: string;
      if (full && mode.includes('--no-backup')) line = refusedUnchanged(ws, REVS, what, 2, names, act);
      else {
        const bytes = storeBytes(ws);
        line = expectRefusal(act(), 2, names, what);
        assert.is(storeBytes(ws), bytes, `${what}: the store's files are unchanged`);
      }
      assert.match(line, /keeps nothing/, `${what}: says why`);
    }
  });
}

test('prune --keep-last -1 and --keep-last 1.5: not a count, refused naming the option', () => {
  for (const n of ['-1', '1.5', 'abc']) {
    const bytes = storeBytes(ws);
    expectRefusal(mstore(ws, ['prune', '--keep-last', n, '--execute', '--no-backup']), 2, /--keep-last expects a non-negative integer/, `prune --keep-last ${n}`);
    assert.is(storeBytes(ws), bytes, `prune --keep-last ${n}: the store's files are unchanged`);
  }
});

test('a zero rule beside one that keeps something is that rule alone (restic: --keep-last 0 --keep-daily 2)', () => {
  const p = mstoreJson<PlanJson>(ws, ['prune', '--keep-last', '0', '--keep-within', '15d']);
  assert.equal(p.keep.map((v) => v.version), ['v003', 'v002']);
  assert.equal(p.keep[0].reasons, ['within 15d']);
  assert.equal(p.remove.map((v) => v.version), ['v001']);
  const q = mstoreJson<PlanJson>(ws, ['prune', '--keep-last', '1', '--keep-within', '0d']);
  assert.equal(q.keep.map((v) => v.version), ['v003']);
  assert.equal(q.keep[0].reasons, ['last 1']);
});

// ---- output: sizes, rates, durations ----

/** A number printed with more than 3 decimals, or a power of two rounded by a double. */
const RAW_NUMBER = /\d\.\d{4,}|9223372036854776000/;

test('verify prints its rate and time humanly (a 3-byte store reads at a few B/s, not 386.19935900561387 B/s)', () => {
  const tiny = tmpDir('mstore-hostile-output-');
  try {
    writeFileSync(path.join(tiny, 'a.bin'), 'abc'); // not a text file: stored in packs, read back by verify
    assert.is(mstore(tiny, ['init']).code, 0);
    assert.is(mstore(tiny, ['commit', '-m', 'tiny']).code, 0);
    const r = mstore(tiny, ['verify']);
    assert.is(r.code, 0, r.stderr);
    const summary = r.stdout.trim().split('\n').pop()!;
    assert.not.match(summary, RAW_NUMBER, `verify summary: ${summary}`);
    assert.match(summary, /in (\d+ ms|\d+\.\d{1,2} s), (\d+ B|\d+(\.\d{1,2})? [KMGTPE]iB)\/s;/, `verify summary: ${summary}`);
  } finally {
    cleanup(tiny);
  }
});

test('a safetensors header length of 2^63-1 is named exactly in the warning, not rounded', () => {
  const d = tmpDir('mstore-hostile-output-');
  try {
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(2n ** 63n - 1n);
    writeFileSync(path.join(d, 'model.safetensors'), Buffer.concat([prefix, Buffer.from('{}'), Buffer.alloc(2 * 1024 * 1024, 7)]));
    assert.is(mstore(d, ['init']).code, 0);
    const r = mstore(d, ['commit', '-m', 'odd header']);
    assert.is(r.code, 0, r.stderr);
    assert.match(r.stderr, /model\.safetensors.*header length 9223372036854775807 exceeds/, r.stderr);
    assert.not.match(r.stderr + r.stdout, RAW_NUMBER);
  } finally {
    cleanup(d);
  }
});

/**
 * A version whose git-lfs pointer says 2^63-1 bytes (the tree of v001 with model.safetensors'
 * pointer rewritten, committed and tagged `huge` with git itself): every reader names the file
 * and the size exactly and refuses, instead of printing 9223372036854776000 or 8388608 TiB.
 */
test('a git-lfs pointer size beyond 2^53-1: show, log, verify and checkout name the file, store unchanged', () => {
  const d = tmpDir('mstore-hostile-output-');
  try {
    writeModelDir(d);
    assert.is(mstore(d, ['init']).code, 0);
    assert.is(mstore(d, ['commit', '-m', 'v1']).code, 0);
    const gd = path.join(d, '.mstore', 'git');
    const tree = git(gd, ['ls-tree', 'v001']).stdout;
    const entry = /^100644 blob ([0-9a-f]{40})\tmodel\.safetensors$/m.exec(tree);
    assert.ok(entry, tree);
    const ptr = git(gd, ['cat-file', 'blob', entry[1]]).stdout.replace(/size \d+/, 'size 9223372036854775807');
    const blob = spawnSync('git', [`--git-dir=${gd}`, 'hash-object', '-w', '--stdin'], { input: ptr, encoding: 'utf8' }).stdout.trim();
    const newTree = spawnSync('git', [`--git-dir=${gd}`, 'mktree'], { input: tree.replace(entry[1], blob), encoding: 'utf8' }).stdout.trim();
    const who = { GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t' };
    const commit = spawnSync('git', [`--git-dir=${gd}`, 'commit-tree', newTree, '-p', 'v001^{commit}', '-m', 'huge'], { encoding: 'utf8', env: { ...process.env, ...who } }).stdout.trim();
    assert.match(commit, /^[0-9a-f]{40}$/);
    assert.is(git(gd, ['update-ref', 'refs/tags/huge', commit]).code, 0);
    const bytes = storeBytes(d);
    for (const args of [['show', 'huge'], ['show', 'huge', '--json'], ['verify', 'huge'], ['checkout', 'huge', '--to', path.join(d, '..', `${path.basename(d)}-out`)]]) {
      const r = mstore(d, args);
      const what = args.join(' ');
      assert.not.match(r.stdout + r.stderr, RAW_NUMBER, `${what}: a rounded size`);
      assert.not.match(r.stdout, /TiB|PiB|EiB/, `${what}: an absurd size shown as a size`);
      assert.ok(r.code !== 0, `${what}: exit 0:\n${r.stdout}`);
      assert.match(r.stdout + r.stderr, /model\.safetensors.*9223372036854775807/, `${what}: names the file and the size`);
      if (args[0] !== 'verify') expectRefusal(r, 1, /model\.safetensors: git-lfs pointer says size 9223372036854775807/, what);
    }
    assert.is(storeBytes(d), bytes, 'the store is unchanged');
  } finally {
    cleanup(d);
    cleanup(path.join(d, '..', `${path.basename(d)}-out`));
  }
});

// ---- gc on a damaged store; gc --dry-run; a damaged ref history ----

/** A store with v001..v003 (the model changes each time) and v001 removed without a backup: gc --grace 0 has work. */
function withGarbage(): string {
  const d = tmpDir('mstore-hostile-gc-');
  assert.is(mstore(d, ['init']).code, 0);
  for (let i = 1; i <= 3; i++) {
    writeModelDir(d, { tensors: [{ name: 'w', dtype: 'BF16', shape: [256, 1024], seed: 40 + i }], step: i });
    const c = mstore(d, ['commit', '-m', `v${i}`]);
    assert.is(c.code, 0, c.stderr);
  }
  const rm = mstore(d, ['rm', 'v001', '--confirm', '--no-backup']);
  assert.is(rm.code, 0, rm.stderr);
  return d;
}

/** Every pack file of a store. */
function packFiles(d: string): string[] {
  const root = path.join(d, '.mstore', 'packs');
  return readdirSync(root).flatMap((sub) => readdirSync(path.join(root, sub)).filter((n) => n.endsWith('.pack')).map((n) => path.join(root, sub, n)));
}

test('gc --dry-run reports what it would free and changes no byte of the store', () => {
  const d = withGarbage();
  try {
    const bytes = storeBytes(d);
    const r = mstore(d, ['gc', '--grace', '0', '--dry-run']);
    assert.is(r.code, 0, r.stderr);
    assert.match(r.stdout, /would free [1-9][0-9.]* (B|KiB|MiB)/, r.stdout);
    assert.is(storeBytes(d), bytes, 'gc --dry-run wrote nothing');
    // the real gc frees it (so the dry run had something to leave alone)
    const real = mstore(d, ['gc', '--grace', '0']);
    assert.is(real.code, 0, real.stderr);
    assert.is.not(storeBytes(d), bytes);
  } finally {
    cleanup(d);
  }
});

test('gc on a store missing a pack a live version needs: refused, one line naming it, nothing removed', () => {
  const d = withGarbage();
  try {
    const v3 = mstoreJson<{ files: { path: string; oid: string }[] }>(d, ['show', 'v003']);
    assert.ok(v3.files.length > 0);
    // the newest pack holds v003's new tensor: set it aside
    const packs = packFiles(d).sort((a, b) => statSync(a).mtimeMs - statSync(b).mtimeMs);
    const gone = packs[packs.length - 1];
    renameSync(gone, `${gone}.aside`);
    const bytes = storeBytes(d);
    expectRefusal(mstore(d, ['gc', '--grace', '0']), 1, /gc refused, nothing removed: the presence check failed \(v003:[^ ]+: pack [0-9a-f]{64} is missing\)/, 'gc with a missing pack');
    assert.is(storeBytes(d), bytes, 'gc on a damaged store removed nothing');
    renameSync(`${gone}.aside`, gone);
    assert.is(mstore(d, ['verify', '--all']).code, 0, 'with the pack back, every version verifies');
  } finally {
    cleanup(d);
  }
});

test('gc with a broken ref (a tag naming a commit that does not exist): refused, one line naming the ref, nothing removed', () => {
  const d = withGarbage();
  try {
    writeFileSync(path.join(d, '.mstore', 'git', 'refs', 'tags', 'broken'), `${'ab'.repeat(20)}\n`);
    const bytes = storeBytes(d);
    expectRefusal(mstore(d, ['gc', '--grace', '0']), 1, /gc refused: refs\/tags\/broken -> (ab){20}/, 'gc with a broken ref');
    assert.is(storeBytes(d), bytes, 'gc with a broken ref removed nothing');
  } finally {
    cleanup(d);
  }
});

/**
 * gc and a push into the same store, in both orders, deterministically: the first holds the
 * store lock (seen in the lock file) while the second starts; the second waits and then runs.
 * Afterwards the store holds every pushed version complete and gc freed only garbage.
 */
test('gc beside a push into the same store (gc first, push first): both finish, every version complete', async () => {
  const root = tmpDir('mstore-hostile-gcpush-');
  try {
    const a = path.join(root, 'a');
    mkdirSync(a);
    assert.is(mstore(a, ['init']).code, 0);
    assert.is(mstore(root, ['init', '--bare', 'remote']).code, 0);
    const remote = path.join(root, 'remote');
    const lockOf = (): string => {
      try {
        return readFileSync(path.join(remote, 'lock'), 'utf8');
      } catch {
        return '';
      }
    };
    for (const [i, first] of [[1, 'gc'], [2, 'push']] as const) {
      writeModelDir(a, { tensors: layerTensors(6, 512, 1024, 60 * i), step: i });
      assert.is(mstore(a, ['commit', '-m', `v${i}`]).code, 0);
      // The default grace period: a push's packs are sent under one lock and its refs moved under
      // another, so only the grace period keeps a gc in between from taking the packs (--grace 0 does not).
      const gcArgs = ['gc'];
      const pushArgs = ['push', '../remote'];
      const one = spawnMstore(first === 'gc' ? remote : a, first === 'gc' ? gcArgs : pushArgs);
      const done1 = new Promise<number | null>((res) => one.on('close', (c) => res(c)));
      // wait until the first holds the remote store's lock (or has finished: then the order is trivially kept)
      let held = false;
      for (let k = 0; k < 4000 && !held && one.exitCode === null; k++) {
        held = lockOf() !== '';
        if (!held) await new Promise((r) => setTimeout(r, 2));
      }
      const two = spawnMstore(first === 'gc' ? a : remote, first === 'gc' ? pushArgs : gcArgs);
      const done2 = new Promise<number | null>((res) => two.on('close', (c) => res(c)));
      const [c1, c2] = await Promise.all([done1, done2]);
      assert.is(c1, 0, `${first} (first) exit`);
      assert.is(c2, 0, `${first === 'gc' ? 'push' : 'gc'} (second) exit`);
      const v = mstore(remote, ['verify', '--all']);
      assert.is(v.code, 0, `after ${first} first: ${v.stdout}${v.stderr}`);
      assert.match(mstore(remote, ['log']).stdout, new RegExp(`v00${i}`));
    }
  } finally {
    cleanup(root);
  }
});

test('gc --grace 0 between a push sending its objects and moving its refs: the ref update is refused and no ref names missing data; with the grace period the push completes', async () => {
  const root = tmpDir('mstore-hostile-gcgap-');
  try {
    assert.is(mstore(root, ['init', '--bare', 'remote']).code, 0);
    const dir = path.join(root, 'remote');
    const v = smallVersion(71, 3, 50_000);
    for (const grace of ['0', undefined]) {
      const r = await StoreRemote.open(dir);
      try {
        await r.send(iter(v.objects));
        const gc = mstore(dir, grace ? ['gc', '--grace', grace] : ['gc']);
        assert.is(gc.code, 0, gc.stderr);
        const update = r.updateRefs([{ ref: 'refs/heads/latest', old: null, new: v.commit }]);
        if (grace) {
          // gc took what no ref named yet: the update re-reads the version and refuses
          const e = await update.then(() => undefined, (x: unknown) => x as { code?: string; message?: string });
          assert.ok(e && (e.code === 'EMISSING' || e.code === 'ECORRUPT'), `refused, not ${e ? `${e.code}: ${e.message}` : 'accepted'}`);
          assert.equal([...(await r.listRefs())], [], 'no ref moved');
        } else {
          await update;
          assert.is((await r.listRefs()).get('refs/heads/latest'), v.commit);
        }
      } finally {
        await r.close();
      }
      const f = mstore(dir, ['fsck']);
      assert.is(f.code, 0, `fsck with grace ${grace ?? 'default'}: ${f.stdout}${f.stderr}`);
    }
    assert.is(mstore(dir, ['verify', '--all']).code, 0);
  } finally {
    cleanup(root);
  }
});

/** Appends bytes to the ref history that are not records of it. */
function damageJournal(d: string): void {
  const f = path.join(d, '.mstore', 'reflog.jsonl');
  writeFileSync(f, readFileSync(f, 'utf8') + 'garbage\u0000\u00ff\n{"ref":5,"new":[],"time":"x"}\n{"time":"notatime","ref":"refs/tags/v001","old":null,"new":"zz","reason":7}\n{"torn');
}

test('a damaged ref history (garbage, records of the wrong shape, a torn line): reflog, log, commit, rm, restore and gc still work', () => {
  const d = withGarbage();
  try {
    damageJournal(d);
    const expectOk = (args: string[]): string => {
      const r = mstore(d, args);
      assert.is(r.code, 0, `${args.join(' ')} on a damaged ref history: ${r.stderr}`);
      assert.not.match(r.stderr, /is not a function|TypeError|\n\s+at /, `${args.join(' ')}: no crash`);
      return r.stdout;
    };
    const log = expectOk(['reflog']);
    assert.match(log, /v001 .*rm/, 'the valid entries are all shown');
    assert.not.match(log, /notatime|-> zz/, 'a record of the wrong shape is not shown as a move');
    expectOk(['reflog', 'v001']);
    expectOk(['log']);
    writeFileSync(path.join(d, 'notes.txt'), 'after the damage');
    expectOk(['commit', '-m', 'after the damage']);
    expectOk(['restore', 'v001']);
    expectOk(['rm', 'v002', '--confirm', '--no-backup']);
    expectOk(['gc', '--grace', '0']);
    expectOk(['fsck']);
  } finally {
    cleanup(d);
  }
});

test('prune --execute killed between two of its ref moves: the next writer finishes them, the rerun exits 0 with nothing left to remove', () => {
  const d = threeVersions();
  try {
    const gitdir = path.join(d, '.mstore', 'git');
    const id = (tag: string): string => git(gitdir, ['rev-parse', `refs/tags/${tag}`]).stdout.trim();
    // What `prune --keep-last 1 --execute` leaves when killed after recording its moves and
    // making the first: v001's tag gone, v002's still there, the lock held by a dead process.
    const time = new Date().toISOString();
    const moves = ['v001', 'v002'].map((t) => ({ time, ref: `refs/tags/${t}`, old: id(t), new: null, reason: 'prune', op: 'a1b2c3d4e5f6', message: 'prune' }));
    const journal = path.join(d, '.mstore', 'reflog.jsonl');
    writeFileSync(journal, readFileSync(journal, 'utf8') + moves.map((m) => `${JSON.stringify(m)}\n`).join(''));
    assert.is(git(gitdir, ['update-ref', '-d', 'refs/tags/v001']).code, 0);
    const dead = spawnSync(process.execPath, ['-e', '']).pid;
    writeFileSync(path.join(d, '.mstore', 'lock'), JSON.stringify({ pid: dead, host: os.hostname(), since: time, command: 'prune' }));

    const r = mstore(d, ['prune', '--keep-last', '1', '--execute', '--json']);
    assert.is(r.code, 0, `the rerun: ${r.stderr}`);
    const out = JSON.parse(r.stdout) as PlanJson & { removed?: unknown[] };
    assert.equal(out.remove, [], 'the finished operation left nothing to remove');
    assert.equal(out.removed, []);
    assert.is(git(gitdir, ['tag', '--list']).stdout.trim(), 'v003', 'v001 and v002 are removed, v003 kept');
    assert.is(mstore(d, ['fsck']).code, 0);
  } finally {
    cleanup(d);
    cleanup(path.join(d, '..', `${path.basename(d)}-backup`));
  }
});

test.after(() => {
  cleanup(ws);
  cleanup(path.join(ws, '..', `${path.basename(ws)}-backup`));
});

test.run();
