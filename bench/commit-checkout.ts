/**
 * `npm run bench`: commit, no-op commit, checkout, dedup and peak memory of mstore on a
 * generated 1 GiB safetensors file, against anchors measured in the same run:
 * `openssl dgst -sha256` (the hashing limit), `cp` (the copy limit), git-lfs and restic.
 * Timings are medians of MSTORE_BENCH_REPS runs (default 3), each after `sync` and a short
 * pause, because this machine's disk writeback (and `discard` on delete) is noisy.
 *
 * Env: MSTORE_BENCH_DIR (work dir), MSTORE_BENCH_GIB (1), MSTORE_BENCH_RSS_GIB (4; 0 skips),
 * MSTORE_BENCH_REPS (3).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync, readdirSync, lstatSync, readFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSafetensors, type TensorSpec } from '../test/helpers.js';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../bundle/cli.js');
const GIB = Number(process.env.MSTORE_BENCH_GIB ?? 1);
const RSS_GIB = Number(process.env.MSTORE_BENCH_RSS_GIB ?? 4);
const REPS = Math.max(1, Number(process.env.MSTORE_BENCH_REPS ?? 3));
const TENSORS = 24;

const base = process.env.MSTORE_BENCH_DIR ?? os.tmpdir();
mkdirSync(base, { recursive: true });
const root = mkdtempSync(path.join(base, 'mstore-bench-'));

function run(cmd: string, args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): { ms: number; stdout: string; stderr: string } {
  const t = performance.now();
  const r = spawnSync(cmd, args, { cwd: opts.cwd, encoding: 'utf8', env: { ...process.env, ...opts.env }, maxBuffer: 1 << 26 });
  const ms = performance.now() - t;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return { ms, stdout: r.stdout, stderr: r.stderr };
}

/** Start each timed step with no dirty pages and a settled disk. */
function settle(): void {
  spawnSync('sync');
  spawnSync('sleep', ['1']);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function du(dir: string): number {
  if (!existsSync(dir)) return 0;
  let total = 0;
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    const st = lstatSync(p);
    total += st.isDirectory() ? du(p) : st.size;
  }
  return total;
}

function sha256(file: string): string {
  return run('sha256sum', [file]).stdout.split(' ')[0];
}

function tensors(seeds: number[], gib: number): TensorSpec[] {
  const rows = Math.floor((gib * 2 ** 30) / seeds.length / 4096 / 2);
  return seeds.map((seed, i) => ({ name: `model.layers.${i}.mlp.weight`, dtype: 'BF16', shape: [rows, 4096], seed }));
}

const have = (cmd: string, args: string[]): boolean => spawnSync(cmd, args).status === 0;
const s = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
const mstore = (cwd: string, ...args: string[]) => run(process.execPath, [CLI, ...args], { cwd });

interface Row {
  what: string;
  value: string;
  ratio: string;
  target: string;
  pass: boolean | undefined;
}
const rows: Row[] = [];

try {
  const ws = path.join(root, 'ws');
  mkdirSync(ws);
  const file = path.join(ws, 'model.safetensors');
  const seeds = Array.from({ length: TENSORS }, (_, i) => i + 1);
  writeSafetensors(file, tensors(seeds, GIB));
  const size = lstatSync(file).size;
  readFileSync(file).length; // warm the page cache
  process.stdout.write(`mstore bench: ${(size / 2 ** 30).toFixed(2)} GiB safetensors (${TENSORS} BF16 tensors), ${REPS} reps, in ${root}\n`);

  const openssl: number[] = [];
  const cp: number[] = [];
  const cpSync: number[] = [];
  const commit: number[] = [];
  const noop: number[] = [];
  const checkout: number[] = [];
  const dst = path.join(root, 'cp.bin');
  const out = path.join(root, 'out');
  for (let i = 0; i < REPS; i++) {
    settle();
    openssl.push(run('openssl', ['dgst', '-sha256', file]).ms);
    settle();
    const copy = run('cp', [file, dst]).ms;
    cp.push(copy);
    cpSync.push(copy + run('sync', []).ms);
    rmSync(dst);
    rmSync(path.join(ws, '.mstore'), { recursive: true, force: true });
    mstore(ws, 'init');
    settle();
    commit.push(mstore(ws, 'commit', '-m', 'bench').ms);
    noop.push(mstore(ws, 'commit', '-m', 'again').ms);
    settle();
    checkout.push(mstore(ws, 'checkout', 'v001', '--to', out).ms);
    if (i === 0 && sha256(path.join(out, 'model.safetensors')) !== sha256(file)) throw new Error('checkout differs from the original');
    rmSync(out, { recursive: true });
  }
  const [o, c, cs, cm, n, co] = [openssl, cp, cpSync, commit, noop, checkout].map(median);
  const mbps = (ms: number) => `${((size / 2 ** 20) / (ms / 1000)).toFixed(0)} MiB/s`;
  rows.push({ what: 'openssl dgst -sha256', value: `${s(o)} (${mbps(o)})`, ratio: '1.00', target: 'anchor', pass: undefined });
  rows.push({ what: 'cp', value: `${s(c)} (${mbps(c)})`, ratio: '1.00', target: 'anchor', pass: undefined });
  // mstore makes what it writes durable (fsync) before publishing; cp does not. For context:
  rows.push({ what: 'cp + sync (durable copy)', value: `${s(cs)} (${mbps(cs)})`, ratio: `${(cs / o).toFixed(2)}x openssl`, target: 'context', pass: undefined });
  rows.push({ what: 'mstore commit (fresh)', value: `${s(cm)} (${mbps(cm)})`, ratio: `${(cm / o).toFixed(2)}x openssl`, target: '<= 2.0x (goal 1.25x)', pass: cm / o <= 2.0 });
  rows.push({ what: 'mstore commit (no change)', value: s(n), ratio: '', target: '<= 0.30 s', pass: n <= 300 });
  rows.push({ what: 'mstore checkout --to', value: `${s(co)} (${mbps(co)})`, ratio: `${(co / c).toFixed(2)}x cp`, target: '<= 2.5x (goal 1.25x)', pass: co / c <= 2.5 });

  // Dedup: v2 with a third of the tensors changed in place.
  const storeBefore = du(path.join(ws, '.mstore'));
  for (let i = 0; i < TENSORS; i += 3) seeds[i] += 1000;
  writeSafetensors(file, tensors(seeds, GIB));
  const tensorBytes = (size - 8 - Number(readFileSync(file).readBigUInt64LE(0))) / TENSORS;
  const changed = (TENSORS / 3) * tensorBytes;
  settle();
  const v2 = mstore(ws, 'commit', '-m', 'v2').ms;
  const growth = du(path.join(ws, '.mstore')) - storeBefore;
  rows.push({ what: 'mstore commit v2 (1/3 changed)', value: s(v2), ratio: `${(v2 / o).toFixed(2)}x openssl`, target: '', pass: undefined });
  rows.push({
    what: 'store growth for v2',
    value: `${(growth / 2 ** 20).toFixed(1)} MiB`,
    ratio: `${((growth / changed) * 100).toFixed(2)} % of changed`,
    target: '<= changed + 1 %',
    pass: growth <= changed * 1.01,
  });
  rmSync(path.join(ws, '.mstore'), { recursive: true, force: true });

  // git-lfs and restic on the same v1 -> v2 files.
  for (let i = 0; i < TENSORS; i += 3) seeds[i] -= 1000;
  writeSafetensors(file, tensors(seeds, GIB));
  readFileSync(file).length;
  if (have('git', ['lfs', 'version'])) {
    const repo = path.join(root, 'lfs');
    mkdirSync(repo);
    run('git', ['init', '-q'], { cwd: repo });
    run('git', ['lfs', 'install', '--local'], { cwd: repo });
    run('git', ['lfs', 'track', '*.safetensors'], { cwd: repo });
    run('cp', [file, path.join(repo, 'model.safetensors')]);
    settle();
    const add = run('git', ['add', 'model.safetensors', '.gitattributes'], { cwd: repo }).ms;
    run('git', ['-c', 'user.name=b', '-c', 'user.email=b@b', 'commit', '-qm', 'v1'], { cwd: repo });
    const before = du(path.join(repo, '.git'));
    for (let i = 0; i < TENSORS; i += 3) seeds[i] += 1000;
    writeSafetensors(path.join(repo, 'model.safetensors'), tensors(seeds, GIB));
    for (let i = 0; i < TENSORS; i += 3) seeds[i] -= 1000;
    run('git', ['add', 'model.safetensors'], { cwd: repo });
    const g = du(path.join(repo, '.git')) - before;
    rows.push({ what: 'git-lfs git add', value: s(add), ratio: `${(add / o).toFixed(2)}x openssl; mstore ${(add / cm).toFixed(1)}x faster`, target: '', pass: undefined });
    rows.push({ what: 'git-lfs growth for v2', value: `${(g / 2 ** 20).toFixed(1)} MiB`, ratio: `${((g / changed) * 100).toFixed(0)} % of changed`, target: '', pass: undefined });
    rmSync(repo, { recursive: true, force: true });
  } else rows.push({ what: 'git-lfs', value: 'skipped (not installed)', ratio: '', target: '', pass: undefined });

  if (have('restic', ['version'])) {
    const repo = path.join(root, 'restic');
    const env = { RESTIC_PASSWORD: 'bench', RESTIC_REPOSITORY: repo, RESTIC_CACHE_DIR: path.join(root, 'restic-cache') };
    run('restic', ['init', '-q'], { env });
    settle();
    const b = run('restic', ['backup', '-q', ws], { env }).ms;
    const before = du(repo);
    for (let i = 0; i < TENSORS; i += 3) seeds[i] += 1000;
    writeSafetensors(file, tensors(seeds, GIB));
    run('restic', ['backup', '-q', ws], { env });
    const g = du(repo) - before;
    rows.push({ what: 'restic backup', value: s(b), ratio: `${(b / o).toFixed(2)}x openssl; mstore ${(b / cm).toFixed(1)}x faster`, target: '', pass: undefined });
    rows.push({ what: 'restic growth for v2', value: `${(g / 2 ** 20).toFixed(1)} MiB`, ratio: `${((g / changed) * 100).toFixed(0)} % of changed`, target: '', pass: undefined });
  } else rows.push({ what: 'restic', value: 'skipped (not installed)', ratio: '', target: '', pass: undefined });
  rmSync(ws, { recursive: true, force: true });

  // Peak memory committing a big fresh file: must not grow with file size.
  if (RSS_GIB > 0) {
    const big = path.join(root, 'big');
    mkdirSync(big);
    writeSafetensors(path.join(big, 'model.safetensors'), tensors(Array.from({ length: TENSORS }, (_, i) => 5000 + i), RSS_GIB));
    mstore(big, 'init');
    settle();
    const r = run('/usr/bin/time', ['-f', '%M', process.execPath, CLI, 'commit', '-m', 'rss'], { cwd: big });
    const kb = Number(r.stderr.trim().split('\n').pop());
    rows.push({ what: `peak RSS, commit of ${RSS_GIB} GiB`, value: `${(kb / 1024).toFixed(0)} MB`, ratio: '', target: '<= 300 MB', pass: kb / 1024 <= 300 });
    rmSync(big, { recursive: true, force: true });
  }

  const w = [34, 22, 38, 22];
  process.stdout.write(`\n${'what'.padEnd(w[0])}${'value'.padEnd(w[1])}${'ratio'.padEnd(w[2])}${'target'.padEnd(w[3])}result\n`);
  for (const r of rows) {
    const res = r.pass === undefined ? '' : r.pass ? 'PASS' : 'FAIL';
    process.stdout.write(`${r.what.padEnd(w[0])}${r.value.padEnd(w[1])}${r.ratio.padEnd(w[2])}${r.target.padEnd(w[3])}${res}\n`);
  }
  process.stdout.write(`\nraw ms: openssl ${openssl.map(Math.round)}, cp ${cp.map(Math.round)}, cp+sync ${cpSync.map(Math.round)}, commit ${commit.map(Math.round)}, no-op ${noop.map(Math.round)}, checkout ${checkout.map(Math.round)}\n`);
} finally {
  rmSync(root, { recursive: true, force: true });
}
