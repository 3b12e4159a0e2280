/**
 * `npm run bench:diff`: the tensor part of `mstore diff` on two stored ~1 GiB safetensors versions
 * (24 BF16 tensors, incompressible; 8 of them rewritten for v002). Without --stats the diff reads
 * two headers and two chunk lists from the index, so it must take < 1 s wall whatever the file
 * size. Timed: the in-process `diffTensors(v001, v002)` (with and without opening the store and
 * the sides around it), the same with stats (reads and decodes the 8 changed tensors on both
 * sides), and the CLI `mstore diff v001 v002 --tensors --json` (a whole process: node startup,
 * files, metadata and curves too) when the build has a `diff` command. Medians of
 * MSTORE_BENCH_REPS (3) reps; each rep opens the store afresh. The anchor is
 * `openssl dgst -sha256` of one version (what reading the data once costs).
 *
 * Env: MSTORE_BENCH_DIR (work dir; default os.tmpdir()), MSTORE_BENCH_GIB (1), MSTORE_BENCH_REPS (3).
 * Exit status: 0 when every acceptance figure passes, 1 otherwise.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSafetensors, type TensorSpec } from '../test/helpers.js';
import { Store } from '../src/repo/store.js';
import { versionSide } from '../src/ops/diff/sides.js';
import { diffTensors, type TensorDiff } from '../src/ops/diff/tensors.js';
import { MiB, envNumber as num, median, table, type Row, workDir } from './lib.js';

const DIST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(DIST, 'bundle', 'cli.js');

const GIB = num('MSTORE_BENCH_GIB', 1);
const REPS = Math.max(1, Math.floor(num('MSTORE_BENCH_REPS', 3)));
const TENSORS = 24;
const CHANGED = 8;
const LIMIT_MS = 1000;

interface Ran {
  ms: number;
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], cwd?: string): Ran {
  const t = performance.now();
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' }, maxBuffer: 64 * MiB });
  const ms = performance.now() - t;
  if (r.error) throw r.error;
  return { ms, code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function must(r: Ran, what: string): Ran {
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}: ${r.stderr}`);
  return r;
}


function tensors(seeds: number[], gib: number): TensorSpec[] {
  const rows = Math.max(1, Math.floor((gib * 2 ** 30) / seeds.length / 4096 / 2));
  return seeds.map((seed, i) => ({ name: `model.layers.${String(i).padStart(2, '0')}.mlp.weight`, dtype: 'BF16', shape: [rows, 4096], seed }));
}

const rows: Row[] = [];


const ms = (v: number): string => (v < 1000 ? `${v.toFixed(1)} ms` : `${(v / 1000).toFixed(2)} s`);
const x = (r: number): string => `${r.toFixed(3)}x`;

/** One in-process diff: open the store and both sides, diff, close. Times the whole and the diff alone. */
async function inProcess(ws: string, stats: boolean): Promise<{ total: number; diff: number; result: TensorDiff[] }> {
  const t0 = performance.now();
  const store = await Store.find(ws);
  const a = await versionSide(store, 'v001');
  const b = await versionSide(store, 'v002');
  const t1 = performance.now();
  const result = await diffTensors(a, b, { stats });
  const t2 = performance.now();
  await a.close();
  await b.close();
  await store.close();
  return { total: performance.now() - t0, diff: t2 - t1, result };
}

const { root, cleanup } = workDir('mstore-bench-diff-', 2.6 * GIB * 2 ** 30 + 2 ** 30); // workspace file + store of two versions + headroom

let failed = false;
try {
  const load0 = os.loadavg()[0];
  const seeds1 = Array.from({ length: TENSORS }, (_, i) => i + 1);
  const changedIdx = Array.from({ length: CHANGED }, (_, k) => k * 3);
  const seeds2 = seeds1.map((s, i) => (changedIdx.includes(i) ? s + 1000 : s));
  const specs1 = tensors(seeds1, GIB);
  const tensorBytes = specs1[0].shape.reduce((a, b) => a * b, 1) * 2;

  const ws = path.join(root, 'ws');
  mkdirSync(ws);
  const file = path.join(ws, 'model.safetensors');
  must(run(process.execPath, [CLI, 'init'], ws), 'mstore init');
  writeSafetensors(file, specs1);
  const size = statSync(file).size;
  must(run(process.execPath, [CLI, 'commit', '-m', 'v1'], ws), 'mstore commit v1');
  writeSafetensors(file, tensors(seeds2, GIB)); // same layout, 8 tensors rewritten in place
  must(run(process.execPath, [CLI, 'commit', '-m', 'v2'], ws), 'mstore commit v2');
  spawnSync('sync');
  const hasDiff = existsSync(CLI) && run(process.execPath, [CLI, 'diff', '--help'], ws).code === 0;
  process.stdout.write(
    `mstore diff bench: two stored versions of a ${(size / 2 ** 30).toFixed(2)} GiB safetensors file ` +
      `(${TENSORS} BF16 tensors of ${(tensorBytes / MiB).toFixed(1)} MiB, ${CHANGED} changed), ${REPS} reps, in ${root}\n` +
      `${os.cpus().length} cpus, load average ${load0.toFixed(2)}; CLI diff command: ${hasDiff ? 'present' : 'absent (in-process only)'}\n\n`,
  );

  // Anchor: one read of one version's bytes.
  const openssl = run('openssl', ['dgst', '-sha256', file]);
  const anchor = openssl.code === 0 ? openssl.ms : undefined;

  const plain: { total: number; diff: number }[] = [];
  const withStats: { total: number; diff: number }[] = [];
  const cli: number[] = [];
  let last: TensorDiff[] = [];
  let lastStats: TensorDiff[] = [];
  let cliOut: unknown;
  for (let i = 0; i < REPS; i++) {
    const p = await inProcess(ws, false);
    plain.push(p);
    last = p.result;
    const s = await inProcess(ws, true);
    withStats.push(s);
    lastStats = s.result;
    if (hasDiff) {
      const r = must(run(process.execPath, [CLI, 'diff', 'v001', 'v002', '--tensors', '--json'], ws), 'mstore diff');
      cli.push(r.ms);
      cliOut = JSON.parse(r.stdout);
    }
  }

  // Correctness (not timed): exactly the rewritten tensors, all of their bytes.
  const wantChanged = changedIdx.map((i) => specs1[i].name).sort();
  const check = (ds: TensorDiff[]): boolean =>
    ds.length === 1 &&
    JSON.stringify(ds[0].tensors.filter((t) => t.status === 'changed').map((t) => t.name)) === JSON.stringify(wantChanged) &&
    ds[0].counts.unchanged === TENSORS - CHANGED &&
    ds[0].bytesChanged === CHANGED * tensorBytes;
  const relNorms = lastStats[0]?.tensors.filter((t) => t.status === 'changed').map((t) => t.relNorm ?? NaN) ?? [];
  const cliTensors = (cliOut as { tensors?: TensorDiff[] } | undefined)?.tensors;

  const mPlain = median(plain.map((r) => r.diff));
  const mPlainTotal = median(plain.map((r) => r.total));
  const mStats = median(withStats.map((r) => r.diff));
  const rel = (v: number): string | undefined => (anchor ? `${x(v / anchor)} openssl` : undefined);
  if (anchor) rows.push({ what: 'openssl dgst -sha256 (one version)', value: `${ms(anchor)} (${(size / MiB / (anchor / 1000)).toFixed(0)} MiB/s)`, ratio: '1.000x', target: 'anchor' });
  rows.push({ what: 'diffTensors(v001, v002)', value: ms(mPlain), ratio: rel(mPlain), target: '< 1 s', pass: mPlain < LIMIT_MS });
  rows.push({ what: '  + open store and sides, close', value: ms(mPlainTotal), ratio: rel(mPlainTotal), target: '< 1 s', pass: mPlainTotal < LIMIT_MS });
  rows.push({ what: 'diffTensors(v001, v002, stats)', value: ms(mStats), ratio: rel(mStats), target: `context (reads ${((2 * CHANGED * tensorBytes) / MiB).toFixed(0)} MiB)` });
  if (hasDiff) {
    const mCli = median(cli);
    rows.push({ what: 'mstore diff v001 v002 --tensors --json', value: ms(mCli), ratio: rel(mCli), target: '< 1 s (whole process)', pass: mCli < LIMIT_MS });
    rows.push({
      what: '  CLI reports the same tensors',
      value: cliTensors && JSON.stringify(cliTensors) === JSON.stringify(last) ? 'same' : 'different',
      target: 'same',
      pass: !!cliTensors && JSON.stringify(cliTensors) === JSON.stringify(last),
    });
  }
  rows.push({ what: 'changed set and bytes exact', value: check(last) && check(lastStats) ? `${CHANGED}/${TENSORS} tensors, ${(CHANGED * tensorBytes / MiB).toFixed(0)} MiB` : 'WRONG', target: 'exact', pass: check(last) && check(lastStats) });
  rows.push({ what: 'relNorm of the rewritten tensors', value: relNorms.length ? `${Math.min(...relNorms).toFixed(3)} .. ${Math.max(...relNorms).toFixed(3)}` : 'none', target: 'context (~1.41 for independent random)' });

  const r1 = (xs: number[]): string => xs.map((v) => v.toFixed(1)).join(' ');
  process.stdout.write(`${table(rows)}\n\n`);
  process.stdout.write(
    `raw ms per rep: diff ${r1(plain.map((r) => r.diff))} | open+diff+close ${r1(plain.map((r) => r.total))} | ` +
      `stats ${r1(withStats.map((r) => r.diff))}${hasDiff ? ` | cli ${r1(cli)}` : ''}\n` +
      `load average ${load0.toFixed(2)} at start, ${os.loadavg()[0].toFixed(2)} at end\n\n`,
  );
  const acc = rows.filter((r) => r.pass !== undefined);
  failed = acc.some((r) => !r.pass);
  process.stdout.write(`${failed ? 'FAIL' : 'PASS'}: ${acc.filter((r) => r.pass).length}/${acc.length} acceptance figures pass\n`);
} catch (e) {
  failed = true;
  process.stderr.write(`bench failed: ${(e as Error).stack ?? e}\n`);
  if (rows.length) process.stdout.write(`partial results:\n${table(rows)}\n`);
} finally {
  cleanup();
}
process.exitCode = failed ? 1 : 0;
