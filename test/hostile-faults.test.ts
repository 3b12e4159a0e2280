/**
 * Fault injection (issue 20, "Also build"): commit, checkout (in place and --to), gc, push (to
 * a path remote and to `mstore serve`, where the faults hit the server) and backup, run so
 * that the Nth write, fsync, rename or index transaction fails, for every N over the calls
 * that operation makes (learnt first from a counting run: MSTORE_FAULT_COUNT), and every later
 * call of that class with it. ENOSPC and EIO alternate by N. After each failure: exit 1 (never a signal), one line naming the file and
 * the error (hostile-helpers' expectRefusal), fsck clean in every store involved, the earlier
 * versions check out byte for byte, and the same operation without the fault (run through the
 * library in this process) succeeds and leaves what it should. Every operation starts from a
 * fresh copy of a tiny fixture (three small files) so that N stays small; problems are
 * collected per operation and reported together, so one run shows every N that misbehaves.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { CLI, cleanup, mstore, tmpDir, treeDigest, writeSafetensors, type RunResult } from './helpers.js';
import { expectRefusal } from './hostile-helpers.js';
import { fsck } from '../src/ops/integrity/fsck.js';
import { checkout } from '../src/ops/checkout.js';
import { gc } from '../src/ops/retention/gc.js';
import { backup } from '../src/ops/copy/backups.js';
import { commitHere, pushHere, withStoreAt } from './in-process.js';

const CLASSES = ['write', 'fsync', 'rename', 'index'] as const;
type Counts = Record<(typeof CLASSES)[number], number>;
/** The refusal line: the error (node's words for ENOSPC and EIO) and a path naming the file. */
const FAULT_LINE = /(no space left on (the )?device|i\/o error|input\/output error).*\/|\/.*(no space left on (the )?device|i\/o error|input\/output error)/i;

const root = tmpDir('mstore-faults-');
test.after(() => cleanup(root));

function ok(cwd: string, args: string[], env: Record<string, string> = {}): RunResult {
  const r = mstore(cwd, args, env);
  assert.is(r.code, 0, `mstore ${args.join(' ')}: ${r.stdout}${r.stderr}`);
  return r;
}

/** Three small files: a model (lfs, packs), a config (git blob), a text file; `step` varies them. */
function writeFiles(ws: string, step: number): void {
  mkdirSync(ws, { recursive: true });
  writeSafetensors(path.join(ws, 'model.safetensors'), [
    { name: 'a.weight', dtype: 'F32', shape: [16, 64], seed: 1 },
    { name: 'b.weight', dtype: 'F32', shape: [16, 64], seed: 10 + step },
  ]);
  writeFileSync(path.join(ws, 'config.json'), JSON.stringify({ step }));
  writeFileSync(path.join(ws, `notes-${step}.txt`), `step ${step}\n`);
}

/** Sums the per-process lines MSTORE_FAULT_COUNT left in `file`. */
function readCounts(file: string): Counts {
  const c: Counts = { write: 0, fsync: 0, rename: 0, index: 0 };
  if (!existsSync(file)) return c;
  for (const line of readFileSync(file, 'utf8').split('\n').filter(Boolean)) {
    const o = JSON.parse(line) as Partial<Counts>;
    for (const k of CLASSES) c[k] += o[k] ?? 0;
  }
  return c;
}

/**
 * The faults to inject: every N of every class, ENOSPC on odd N and EIO on even N. Sticky
 * (`N+`: the Nth call and every later one of the class fail, as on a full disk or a dying
 * device): a single failing call could be retried away (isomorphic-git rewrites a loose
 * object once after any error), and an ignored error is then told from a retried one.
 */
function faultsOf(c: Counts): string[] {
  const out: string[] = [];
  for (const k of CLASSES) for (let n = 1; n <= c[k]; n++) out.push(`${k}:${n}+:${n % 2 ? 'ENOSPC' : 'EIO'}`);
  return out;
}

interface Op {
  name: string;
  /** Builds the fixture under `dir` (a slot keeps its own, at the same path: stored paths stay valid). */
  setup(dir: string): Promise<void> | void;
  /** Runs the operation; `env` carries the fault (or the count file). */
  act(dir: string, env: Record<string, string>): Promise<RunResult>;
  /** Stores to fsck and the versions in them that must check out as before: [store dir, revs]. */
  stores(dir: string): [string, string[]][];
  /**
   * The same operation without a fault, run through the library in this process (the CLI
   * start was tested by `act`; a process each would double the file's time): throws where the
   * command would exit non-zero.
   */
  rerun(dir: string): Promise<unknown>;
  /** After the rerun without a fault succeeded: what it must have left. */
  done(dir: string): Promise<void>;
}

/** `mstore` without blocking the event loop, so that slots run side by side. */
function mstoreAsync(cwd: string, args: string[], env: Record<string, string> = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd, env: { ...process.env, NO_COLOR: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** What each of `revs` holds (path -> sha256), read by checking it out in this process. */
async function contents(dir: string, revs: string[]): Promise<Map<string, Map<string, string>>> {
  const out = new Map<string, Map<string, string>>();
  await withStoreAt(dir, async (s) => {
    for (const rev of revs) {
      const to = tmpDir('mstore-faults-co-');
      try {
        await checkout(s, { rev, cwd: dir, to: path.join(to, 'out') });
        out.set(rev, treeDigest(path.join(to, 'out')));
      } finally {
        cleanup(to);
      }
    }
  });
  return out;
}

/** fsck is clean in `dir` and `versions` check out as before. */
async function intact(dir: string, versions: Map<string, Map<string, string>>, what: string): Promise<void> {
  const r = await withStoreAt(dir, (s) => fsck(s));
  assert.ok(r.ok, `${what}: fsck of ${path.relative(root, dir)}: ${r.problems.join('; ')}`);
  assert.equal(await contents(dir, [...versions.keys()]), versions, `${what}: earlier versions of ${path.relative(root, dir)} check out as before`);
}

/** FAULTS_ONLY=commit,gc runs only those operations (to replay one while fixing it). */
const ONLY = process.env.FAULTS_ONLY?.split(',');

/** The store's lock file and temporary files (pack temporaries, `.mstore-tmp-*`), which a failed command must not leave. */
function leftovers(dir: string): string[] {
  const store = existsSync(path.join(dir, '.mstore')) ? path.join(dir, '.mstore') : dir;
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const e of readdirSync(path.join(store, rel), { withFileTypes: true })) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(p);
      else if (p === 'lock' || p.startsWith('tmp/') || e.name.startsWith('.mstore-tmp-')) out.push(p);
    }
  };
  walk('');
  return out;
}

/** Fixture copies worked on side by side (the machine's cores; each slot has its own paths). */
const SLOTS = 2;

/**
 * Runs `op` once counting, then once per fault over a fresh copy of its fixture, holding each
 * failure to the contract; returns the problems found (empty: all held) and the counts.
 */
async function exercise(op: Op): Promise<{ counts: Counts; problems: string[] }> {
  if (ONLY && !ONLY.includes(op.name)) return { counts: { write: 0, fsync: 0, rename: 0, index: 0 }, problems: [] };
  const slots = Array.from({ length: SLOTS }, (_, i) => path.join(root, `${op.name}-${i}`));
  for (const dir of slots) {
    await op.setup(dir);
    cpSync(dir, `${dir}.snap`, { recursive: true });
  }
  const fresh = (dir: string): void => {
    rmSync(dir, { recursive: true, force: true });
    cpSync(`${dir}.snap`, dir, { recursive: true });
  };
  const before = new Map<string, Map<string, Map<string, string>>>();
  for (const [s, revs] of op.stores(slots[0])) before.set(path.relative(slots[0], s), await contents(s, revs));

  const countFile = path.join(root, `${op.name}.counts`);
  const counted = await op.act(slots[0], { MSTORE_FAULT_COUNT: countFile });
  assert.is(counted.code, 0, `${op.name} (counting): ${counted.stderr}`);
  const counts = readCounts(countFile);
  assert.ok(counts.write > 0 && counts.fsync > 0 && counts.rename > 0, `${op.name}: the seam counted nothing: ${JSON.stringify(counts)}`);

  const problems: string[] = [];
  const queue = faultsOf(counts);
  const one = async (dir: string, spec: string): Promise<void> => {
    fresh(dir);
    const what = `${op.name} with MSTORE_FAULT=${spec}`;
    try {
      // Counted too: the calls vary by one or two between runs (a commit's id decides whether
      // its fan-out directory is new), and a fault past the last call never fires.
      const ran = `${dir}.ran`;
      rmSync(ran, { force: true });
      const r = await op.act(dir, { MSTORE_FAULT: spec, MSTORE_FAULT_COUNT: ran });
      const [cls, nth] = spec.split(':');
      if (readCounts(ran)[cls as keyof Counts] < Number.parseInt(nth, 10)) {
        assert.is(r.code, 0, `${what}: never fired, yet: ${r.stderr}`);
        await op.done(dir);
        return;
      }
      if (r.code === 0 && /^mstore: warning: the stat cache was not updated: .*\//.test(r.stderr)) {
        // The fault hit the stat cache after the version was published: derived data, so the
        // command succeeds with a warning naming the index (docs/format.md §9.1), and it is done.
        await op.done(dir);
        return;
      }
      expectRefusal(r, 1, FAULT_LINE, what);
      for (const [rel, versions] of before) {
        await intact(path.join(dir, rel), versions, what);
        assert.equal(leftovers(path.join(dir, rel)), [], `${what}: ${rel} is unlocked and holds no temporary file`);
      }
      await op.rerun(dir).catch((e: Error) => assert.unreachable(`${what}: the rerun without the fault: ${e.message}`));
      await op.done(dir);
    } catch (e) {
      problems.push((e as Error).message.split('\n')[0]);
    }
  };
  await Promise.all(
    slots.map(async (dir) => {
      for (let spec = queue.shift(); spec !== undefined; spec = queue.shift()) await one(dir, spec);
    }),
  );
  return { counts, problems: problems.sort() };
}

/** A workspace with v001 and v002 committed; v001's files are kept aside in `dir/v1` for comparing. */
function twoVersions(dir: string): string {
  const ws = path.join(dir, 'ws');
  writeFiles(ws, 1);
  ok(ws, ['init']);
  ok(ws, ['commit', '-m', 'one']);
  rmSync(path.join(ws, 'notes-1.txt'));
  writeFiles(ws, 2);
  ok(ws, ['commit', '-m', 'two']);
  return ws;
}

async function expectVersion(ws: string, rev: string, files: Map<string, string>, what: string): Promise<void> {
  assert.equal((await contents(ws, [rev])).get(rev), files, `${what}: ${rev} holds what was committed`);
}

function report(name: string, r: { counts: Counts; problems: string[] }): void {
  console.log(`  ${name}: ${JSON.stringify(r.counts)} -> ${r.problems.length} problem(s)`);
  assert.equal(r.problems, [], `${name}: ${r.problems.length} fault(s) broke the contract:\n${r.problems.join('\n')}`);
}

test('commit: every write, fsync, rename and index transaction failing in turn', async () => {
  let wanted = new Map<string, string>();
  const op: Op = {
    name: 'commit',
    setup(dir) {
      const ws = path.join(dir, 'ws');
      writeFiles(ws, 1);
      ok(ws, ['init']);
      ok(ws, ['commit', '-m', 'one']);
      rmSync(path.join(ws, 'notes-1.txt'));
      writeFiles(ws, 2);
      wanted = treeDigest(ws);
    },
    act: (dir, env) => mstoreAsync(path.join(dir, 'ws'), ['commit', '-m', 'two'], env),
    rerun: (dir) => commitHere(path.join(dir, 'ws'), 'two'),
    stores: (dir) => [[path.join(dir, 'ws'), ['v001']]],
    // latest: a failed attempt may have used the number v002 up (the ref history keeps it; numbers are never reused).
    done: (dir) => expectVersion(path.join(dir, 'ws'), 'latest', wanted, 'commit'),
  };
  report('commit', await exercise(op));
  if (ONLY && !ONLY.includes('commit')) return;
  const v = mstore(path.join(root, 'commit-0', 'ws'), ['verify', '--all']);
  assert.is(v.code, 0, v.stdout + v.stderr);
});

test('checkout in place: every write, fsync and rename failing in turn', async () => {
  let v1 = new Map<string, string>();
  const op: Op = {
    name: 'checkout-in-place',
    async setup(dir) {
      const ws = twoVersions(dir);
      v1 = (await contents(ws, ['v001'])).get('v001')!;
    },
    act: (dir, env) => mstoreAsync(path.join(dir, 'ws'), ['checkout', 'v001'], env),
    rerun: (dir) => withStoreAt(path.join(dir, 'ws'), (s) => checkout(s, { rev: 'v001', cwd: path.join(dir, 'ws') })),
    stores: (dir) => [[path.join(dir, 'ws'), ['v001', 'v002']]],
    done: async (dir) => assert.equal(treeDigest(path.join(dir, 'ws')), v1, 'the workspace holds v001 after the rerun'),
  };
  report('checkout in place', await exercise(op));
});

test('checkout --to: every write, fsync and rename failing in turn', async () => {
  let v2 = new Map<string, string>();
  const op: Op = {
    name: 'checkout-to',
    setup(dir) {
      const ws = twoVersions(dir);
      v2 = treeDigest(ws);
    },
    act: (dir, env) => mstoreAsync(path.join(dir, 'ws'), ['checkout', 'v002', '--to', path.join(dir, 'out')], env),
    rerun: (dir) => withStoreAt(path.join(dir, 'ws'), (s) => checkout(s, { rev: 'v002', cwd: path.join(dir, 'ws'), to: path.join(dir, 'out') })),
    stores: (dir) => [[path.join(dir, 'ws'), ['v001']]],
    done: async (dir) => assert.equal(treeDigest(path.join(dir, 'out')), v2, 'out holds v002 after the rerun'),
  };
  report('checkout --to', await exercise(op));
});

test('gc: every write, fsync, rename and index transaction failing in turn', async () => {
  const op: Op = {
    name: 'gc',
    setup(dir) {
      const ws = path.join(dir, 'ws');
      writeFiles(ws, 1);
      ok(ws, ['init']);
      ok(ws, ['commit', '-m', 'one']);
      writeFiles(ws, 2);
      writeSafetensors(path.join(ws, 'extra.safetensors'), [{ name: 'x', dtype: 'F32', shape: [16, 64], seed: 77 }]);
      ok(ws, ['commit', '-m', 'two']);
      rmSync(path.join(ws, 'extra.safetensors'));
      writeFileSync(path.join(ws, 'config.json'), JSON.stringify({ step: 3 }));
      ok(ws, ['commit', '-m', 'three']);
      // v002's pack holds v003's tensor (live) and extra.safetensors (v002's alone): gc rewrites it.
      ok(ws, ['rm', 'v002', '--confirm', '--no-backup']);
    },
    act: (dir, env) => mstoreAsync(path.join(dir, 'ws'), ['gc', '--grace', '0'], env),
    rerun: (dir) => withStoreAt(path.join(dir, 'ws'), (s) => gc(s, { graceMs: 0 })),
    stores: (dir) => [[path.join(dir, 'ws'), ['v001', 'v003']]],
    // What `mstore gc --grace 0 --dry-run` reports, asked in this process.
    done: async (dir) => {
      const r = await withStoreAt(path.join(dir, 'ws'), (s) => gc(s, { graceMs: 0, dryRun: true }));
      assert.equal([r.chunks.removed, r.packs.removed, r.packs.rewritten], [0, 0, 0], `gc after the rerun has nothing left to free: ${JSON.stringify(r)}`);
    },
  };
  report('gc', await exercise(op));
});

test('push to a path remote: every write, fsync, rename and index transaction failing in turn', async () => {
  let v2 = new Map<string, string>();
  const op: Op = {
    name: 'push-path',
    setup(dir) {
      const ws = path.join(dir, 'ws');
      writeFiles(ws, 1);
      ok(ws, ['init']);
      ok(ws, ['commit', '-m', 'one']);
      ok(dir, ['init', '--bare', path.join(dir, 'nas')]);
      ok(ws, ['remote', 'add', 'nas', path.join(dir, 'nas')]);
      ok(ws, ['push', 'nas']);
      rmSync(path.join(ws, 'notes-1.txt'));
      writeFiles(ws, 2);
      ok(ws, ['commit', '-m', 'two']);
      v2 = treeDigest(ws);
    },
    act: (dir, env) => mstoreAsync(path.join(dir, 'ws'), ['push', 'nas'], env),
    rerun: (dir) => pushHere(path.join(dir, 'ws'), 'nas'),
    stores: (dir) => [
      [path.join(dir, 'ws'), ['v001', 'v002']],
      [path.join(dir, 'nas'), ['v001']],
    ],
    done: (dir) => expectVersion(path.join(dir, 'nas'), 'v002', v2, 'push'),
  };
  report('push to a path remote', await exercise(op));
});

test('backup: every write, fsync, rename and index transaction failing in turn', async () => {
  let v2 = new Map<string, string>();
  const op: Op = {
    name: 'backup',
    setup(dir) {
      const ws = twoVersions(dir);
      v2 = treeDigest(ws);
      ok(ws, ['backup', 'add', 'disk2', path.join(dir, 'disk2')]);
      ok(ws, ['backup', 'v001']);
    },
    act: (dir, env) => mstoreAsync(path.join(dir, 'ws'), ['backup', 'v002'], env),
    rerun: (dir) => withStoreAt(path.join(dir, 'ws'), (s) => backup(s, { revs: ['v002'] })),
    stores: (dir) => [
      [path.join(dir, 'ws'), ['v001', 'v002']],
      [path.join(dir, 'disk2'), ['v001']],
    ],
    done: (dir) => expectVersion(path.join(dir, 'disk2'), 'v002', v2, 'backup'),
  };
  report('backup', await exercise(op));
});

/** `mstore serve` over `store` on `port` with `env` (the fault goes to the server); resolves with its URL and a stop. */
async function serve(store: string, tokens: string, env: Record<string, string>, port = 0): Promise<{ url: string; stop: () => Promise<string> }> {
  const child = spawn(process.execPath, [CLI, 'serve', store, '--listen', `127.0.0.1:${port}`, '--tokens', tokens], {
    env: { ...process.env, NO_COLOR: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/127\.0\.0\.1:[0-9]+)/.exec(out);
      if (m) resolve(m[1]);
    });
    child.once('exit', (code) => reject(new Error(`mstore serve exited ${code}: ${err}`)));
  });
  const stop = (): Promise<string> =>
    new Promise((resolve) => {
      if (child.exitCode !== null) return resolve(err);
      child.once('exit', () => resolve(err));
      child.kill('SIGTERM');
    });
  return { url, stop };
}

test('push to mstore serve: every write, fsync, rename and index transaction of the server failing in turn', async () => {
  let v2 = new Map<string, string>();
  const TOKEN = 'faults-push-token';
  // Each slot's server listens on the port its fixture's remote names (set once, in setup), so
  // a run does not rewrite the remote; only when that port was taken meanwhile is it moved.
  const ports = new Map<string, number>();
  /** `fn` run against the slot's server, started with `env` (the fault) and stopped after. */
  const withServer = async <T>(dir: string, env: Record<string, string>, fn: (ws: string) => Promise<T>): Promise<T> => {
    const ws = path.join(dir, 'ws');
    const want = ports.get(dir) ?? 0;
    const server = await serve(path.join(dir, 'box'), path.join(dir, 'tokens'), env, want).catch((e: Error) => {
      if (!want || !/EADDRINUSE|in use/i.test(e.message)) throw e;
      return serve(path.join(dir, 'box'), path.join(dir, 'tokens'), env);
    });
    try {
      const port = Number(new URL(server.url).port);
      if (port !== want) {
        if (want) assert.is((await mstoreAsync(ws, ['remote', 'remove', 'box'])).code, 0);
        const added = await mstoreAsync(ws, ['remote', 'add', 'box', server.url, '--token-env', 'BOX_TOKEN']);
        assert.is(added.code, 0, added.stderr);
        if (!want) ports.set(dir, port);
      }
      return await fn(ws);
    } finally {
      await server.stop();
    }
  };
  const pushTo = (dir: string, env: Record<string, string>): Promise<RunResult> =>
    withServer(dir, env, async (ws) => {
      const r = await mstoreAsync(ws, ['push', 'box'], { BOX_TOKEN: TOKEN });
      // The device's refusal is 507 Insufficient Storage (docs/protocol.md), never a bare 500.
      if (env.MSTORE_FAULT && r.code !== 0) assert.match(r.stderr, /HTTP 507/, `push with the server's MSTORE_FAULT=${env.MSTORE_FAULT}: ${r.stderr}`);
      return r;
    });
  const op: Op = {
    name: 'push-serve',
    async setup(dir) {
      const ws = path.join(dir, 'ws');
      writeFiles(ws, 1);
      ok(ws, ['init']);
      ok(ws, ['commit', '-m', 'one']);
      ok(dir, ['init', '--bare', path.join(dir, 'box')]);
      writeFileSync(path.join(dir, 'tokens'), `push ${TOKEN}\n`);
      const first = await pushTo(dir, {});
      assert.is(first.code, 0, `push v001 to the box: ${first.stderr}`);
      rmSync(path.join(ws, 'notes-1.txt'));
      writeFiles(ws, 2);
      ok(ws, ['commit', '-m', 'two']);
      v2 = treeDigest(ws);
    },
    act: (dir, env) => pushTo(dir, env),
    rerun: (dir) => withServer(dir, {}, (ws) => pushHere(ws, 'box', { BOX_TOKEN: TOKEN })),
    stores: (dir) => [[path.join(dir, 'box'), ['v001']]],
    done: (dir) => expectVersion(path.join(dir, 'box'), 'v002', v2, 'push to serve'),
  };
  report('push to mstore serve', await exercise(op));
});

test('a background fdatasync that fails (a file over 64 MiB) fails the commit and the checkout, once only', async () => {
  if (ONLY && !ONLY.includes('big')) return;
  const ws = path.join(root, 'big', 'ws');
  mkdirSync(ws, { recursive: true });
  // 68 MiB: pack writing and materialising both start a background fdatasync at 64 MiB, the first fsync-class call.
  writeSafetensors(path.join(ws, 'big.safetensors'), [{ name: 'w', dtype: 'F32', shape: [4352, 4096], seed: 5 }]);
  ok(ws, ['init']);
  const wanted = treeDigest(ws);
  expectRefusal(await mstoreAsync(ws, ['commit', '-m', 'big'], { MSTORE_FAULT: 'fsync:1:EIO' }), 1, FAULT_LINE, 'commit whose background fdatasync fails');
  assert.equal(leftovers(ws), [], 'the failed commit leaves no temporary file');
  ok(ws, ['commit', '-m', 'big']);
  const out = path.join(root, 'big', 'out');
  expectRefusal(await mstoreAsync(ws, ['checkout', 'latest', '--to', out], { MSTORE_FAULT: 'fsync:1:EIO' }), 1, FAULT_LINE, 'checkout whose background fdatasync fails');
  ok(ws, ['checkout', 'latest', '--to', out]);
  assert.equal(treeDigest(out), wanted);
});

test.run();
