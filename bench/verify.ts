/**
 * `npm run bench:verify`: throughput of `mstore verify --all` (issue 3, acceptance 6: at least
 * 0.70x the throughput of `openssl dgst -sha256` over the same bytes), on a generated 1 GiB
 * safetensors file (24 BF16 tensors, incompressible) plus a small config.json.
 *
 * Two stores are measured in turn: A, one version; B, the same store after a second version with
 * a third of the tensors rewritten in place (shared chunks). Verify re-reads and re-hashes every
 * distinct *file* (the whole-file sha256 needs all its bytes) but hashes each distinct *chunk*
 * once, so for B two byte counts are printed: the bytes verify reads (its `--json` `bytes`, the
 * basis of the acceptance ratio) and the distinct chunk bytes stored (a stricter, context-only
 * ratio). Throughput = bytes / wall time of the whole process, node startup included; the
 * in-process rate (`bytes / seconds` from the JSON) is printed beside it.
 *
 * Every timing is the wall time of a real process (performance.now around spawnSync). The store's
 * packs and the workspace file are read once beforehand, so all runs hit the page cache; openssl
 * and verify are interleaved, REPS each, and compared by their medians (every run is printed).
 * Also printed: `verify --all --quick`, `--sample 10`, and `restic check --read-data` on a restic
 * repo holding the same v1 file, when restic is installed.
 *
 * Env: MSTORE_BENCH_DIR (work dir; default os.tmpdir()), MSTORE_BENCH_GIB (1), MSTORE_BENCH_REPS
 * (3), MSTORE_BENCH_CLI (the CLI file; default the esbuild bundle when it is at least as new as
 * dist/src/cli/main.js, else dist/src/cli/main.js).
 * Exit status: 0 when every acceptance figure passes, 1 otherwise.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeSafetensors, type TensorSpec } from '../test/helpers.js';
import { CLI, MiB, cliLine, envNumber as num, have, median, mib, run, secs, table, warm, x, type Ran, type Row, workDir } from './lib.js';


const GIB = num('MSTORE_BENCH_GIB', 1);
const REPS = Math.max(1, Math.floor(num('MSTORE_BENCH_REPS', 3)));
const TENSORS = 24;
const CHANGED = 8; // tensors changed in place for v2: a third
const TARGET = 0.7;

// ---------------------------------------------------------------- helpers







/** Warms every regular file under `dir`; returns their total size. */
function warmTree(dir: string): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const p = path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name);
    warm(p);
    total += statSync(p).size;
  }
  return total;
}

function tensors(seeds: number[], gib: number): TensorSpec[] {
  const rows = Math.max(1, Math.floor((gib * 2 ** 30) / seeds.length / 4096 / 2));
  return seeds.map((seed, i) => ({ name: `model.layers.${i}.mlp.weight`, dtype: 'BF16', shape: [rows, 4096], seed }));
}

const rate = (bytes: number, ms: number): number => bytes / MiB / (ms / 1000);
const mbps = (bytes: number, ms: number): string => `${rate(bytes, ms).toFixed(0)} MiB/s`;
const mstore = (cwd: string, args: string[]): Ran => run(process.execPath, [CLI, ...args], { cwd, rusage: true });
const cpuOf = (r: Ran): string => (r.cpu ? `${r.cpu.user.toFixed(2)}u+${r.cpu.sys.toFixed(2)}s` : '?');

interface VerifyJson {
  ok: boolean;
  versions: { name: string }[];
  files: number;
  chunks: number;
  bytes: number;
  seconds: number;
}

const rows: Row[] = [];
const summary: Row[] = [];
const accept = (r: Row): void => {
  rows.push(r);
  summary.push(r);
};


// ---------------------------------------------------------------- setup

// Peak use: the workspace file, its store (v1 + a third), a restic repo of v1; plus headroom.
const { root, cleanup } = workDir('mstore-bench-verify-', 3.5 * GIB * 2 ** 30 + 2 ** 30);

let failed = false;
const raw: string[] = [];
try {
  const t0 = performance.now();
  const load0 = os.loadavg();
  const seeds1 = Array.from({ length: TENSORS }, (_, i) => i + 1);
  // v2: 8 of 24 tensors (every third) get new bytes; same names, shapes and offsets.
  const changedIdx = Array.from({ length: CHANGED }, (_, k) => k * 3);
  const seeds2 = seeds1.map((s, i) => (changedIdx.includes(i) ? s + 1000 : s));

  const ws = path.join(root, 'ws');
  mkdirSync(ws);
  const file = path.join(ws, 'model.safetensors');
  const config = path.join(ws, 'config.json');
  writeSafetensors(file, tensors(seeds1, GIB));
  writeFileSync(config, `${JSON.stringify({ architectures: ['BenchForCausalLM'], hidden_size: 4096, num_hidden_layers: TENSORS, torch_dtype: 'bfloat16' }, null, 2)}\n`);
  const size = statSync(file).size;
  const tensorBytes = tensors(seeds1, GIB)[0].shape.reduce((a, b) => a * b, 1) * 2;

  mstore(ws, ['init']);
  const c1 = JSON.parse(mstore(ws, ['commit', '-m', 'v1', '--json']).stdout) as { newBytes?: number };
  spawnSync('sync');

  process.stdout.write(
    `mstore verify bench: ${(size / 2 ** 30).toFixed(2)} GiB safetensors (${TENSORS} BF16 tensors) + config.json, ${REPS} reps, in ${root}\n` +
      `${cliLine()}\n` +
      `${os.cpus().length} cpus, load average ${load0.map((l) => l.toFixed(2)).join(' ')} at start` +
      `${load0[0] > 1.0 ? '  ** WARNING: load > 1.0, noisy machine: timings are unreliable **' : ''}\n\n`,
  );

  /** Warms the store and the workspace file, then runs openssl and verify --all interleaved. */
  const measure = (label: string, versions: number): { verifyMs: number; opensslMs: number; j: VerifyJson; perRep: number[]; verifyCpu: string[] } => {
    const warmed = warmTree(path.join(ws, '.mstore'));
    warm(file);
    const t = { openssl: [] as number[], verify: [] as number[], inproc: [] as number[] };
    const verifyCpu: string[] = [];
    const opensslCpu: string[] = [];
    let j: VerifyJson | undefined;
    for (let i = 0; i < REPS; i++) {
      const o = run('openssl', ['dgst', '-sha256', file], { rusage: true });
      t.openssl.push(o.ms);
      opensslCpu.push(cpuOf(o));
      const v = mstore(ws, ['verify', '--all', '--json']);
      j = JSON.parse(v.stdout) as VerifyJson;
      if (!j.ok || j.versions.length !== versions) throw new Error(`verify --all: expected ${versions} sound version(s), got ${v.stdout}`);
      t.verify.push(v.ms);
      t.inproc.push(j.seconds * 1000);
      verifyCpu.push(cpuOf(v));
    }
    const opensslMs = median(t.openssl);
    const verifyMs = median(t.verify);
    const perRep = t.verify.map((ms, i) => rate(j!.bytes, ms) / rate(size, t.openssl[i]));
    const r0 = (xs: number[]): string => xs.map((v) => Math.round(v)).join(' ');
    raw.push(
      `${label}: warmed ${mib(warmed)} of store + ${mib(size)} workspace file\n` +
        `  wall ms per rep: openssl ${r0(t.openssl)} | verify --all ${r0(t.verify)} | verify in-process (json seconds) ${r0(t.inproc)}\n` +
        `  cpu per rep: openssl ${opensslCpu.join(' ')} | verify --all ${verifyCpu.join(' ')}\n` +
        `  per-rep ratio (verify MiB/s / openssl MiB/s, bytes read): ${perRep.map((r) => r.toFixed(2)).join(' ')}`,
    );
    rows.push({ what: `[${label}] openssl dgst -sha256 (1 file)`, value: `${secs(opensslMs)} (${mbps(size, opensslMs)})`, ratio: '1.00x', target: 'anchor' });
    rows.push({ what: `[${label}] verify --all: bytes read (json)`, value: `${mib(j!.bytes)} in ${j!.files} file(s), ${j!.chunks} chunk(s)`, target: 'context' });
    rows.push({ what: `[${label}] verify --all: in-process`, value: `${secs(median(t.inproc))} (${mbps(j!.bytes, median(t.inproc))})`, ratio: `${x(rate(j!.bytes, median(t.inproc)) / rate(size, opensslMs))} openssl`, target: 'context' });
    return { verifyMs, opensslMs, j: j!, perRep, verifyCpu };
  };

  const modes = (label: string): void => {
    const q: number[] = [];
    const s: number[] = [];
    let sj: VerifyJson | undefined;
    for (let i = 0; i < REPS; i++) {
      q.push(mstore(ws, ['verify', '--all', '--quick', '--json']).ms);
      const r = mstore(ws, ['verify', '--all', '--sample', '10', '--json']);
      sj = JSON.parse(r.stdout) as VerifyJson;
      s.push(r.ms);
    }
    rows.push({ what: `[${label}] verify --all --quick`, value: secs(median(q)), ratio: `runs ${q.map((v) => Math.round(v)).join(' ')} ms`, target: 'context' });
    rows.push({ what: `[${label}] verify --all --sample 10`, value: `${secs(median(s))} (last: ${sj!.chunks} chunks, ${mib(sj!.bytes)})`, ratio: `runs ${s.map((v) => Math.round(v)).join(' ')} ms`, target: 'context' });
  };

  // -------------------------------------------------------------- A: one version
  const a = measure('A: 1 version', 1);
  const aRatio = rate(a.j.bytes, a.verifyMs) / rate(size, a.opensslMs);
  accept({
    what: '[A: 1 version] mstore verify --all',
    value: `${secs(a.verifyMs)} (${mbps(a.j.bytes, a.verifyMs)})`,
    ratio: `${x(aRatio)} openssl`,
    target: `>= ${TARGET.toFixed(2)}x`,
    pass: aRatio >= TARGET,
  });
  modes('A: 1 version');

  // How much two hash streams really overlap here: verify hashes on two threads (chunk ids on
  // the main thread, the whole file on a worker), so it needs two cores' worth of sha256.
  {
    const ms: number[] = [];
    for (let i = 0; i < REPS; i++) ms.push(run('sh', ['-c', 'openssl dgst -sha256 "$1" >/dev/null & openssl dgst -sha256 "$1" >/dev/null; wait', 'sh', file]).ms);
    const m = median(ms);
    rows.push({
      what: '[A: 1 version] 2x openssl dgst concurrently',
      value: `${secs(m)} (${mbps(2 * size, m)} together)`,
      ratio: `${x((2 * a.opensslMs) / m)} of one (2.00x = two free cores)`,
      target: 'context',
    });
    raw.push(`2x openssl concurrently: wall ms ${ms.map((v) => Math.round(v)).join(' ')}`);
  }

  // restic on the same v1 file: check --read-data reads and re-hashes every pack.
  if (have('restic', ['version'])) {
    const repo = path.join(root, 'restic');
    const env = { RESTIC_PASSWORD: 'bench', RESTIC_REPOSITORY: repo, RESTIC_CACHE_DIR: path.join(root, 'restic-cache') };
    run('restic', ['init', '-q'], { env });
    run('restic', ['backup', '-q', file], { env });
    const repoBytes = warmTree(repo);
    const ms: number[] = [];
    const cpu: string[] = [];
    for (let i = 0; i < Math.min(REPS, 2); i++) {
      const r = run('restic', ['check', '--read-data'], { env, rusage: true });
      ms.push(r.ms);
      cpu.push(cpuOf(r));
    }
    const m = median(ms);
    rows.push({
      what: '[A: 1 version] restic check --read-data',
      value: `${secs(m)} (${mbps(size, m)} of file; repo ${mib(repoBytes)})`,
      ratio: `${x(rate(size, m) / rate(size, a.opensslMs))} openssl; ${x(m / a.verifyMs)} mstore's time`,
      target: 'comparison',
    });
    raw.push(`restic check --read-data: wall ms ${ms.map((v) => Math.round(v)).join(' ')} | cpu ${cpu.join(' ')}`);
    rmSync(repo, { recursive: true, force: true });
    rmSync(env.RESTIC_CACHE_DIR, { recursive: true, force: true });
  } else rows.push({ what: 'restic', value: 'skipped (not installed)' });

  // -------------------------------------------------------------- B: two versions sharing chunks
  writeSafetensors(file, tensors(seeds2, GIB)); // same inode, same layout, 8 tensors rewritten
  const c2 = JSON.parse(mstore(ws, ['commit', '-m', 'v2', '--json']).stdout) as { newBytes?: number };
  spawnSync('sync');
  const distinct = c1.newBytes !== undefined && c2.newBytes !== undefined ? c1.newBytes + c2.newBytes : size + CHANGED * tensorBytes;
  const b = measure('B: 2 versions', 2);
  const bRatio = rate(b.j.bytes, b.verifyMs) / rate(size, b.opensslMs);
  const bDistinct = rate(distinct, b.verifyMs) / rate(size, b.opensslMs);
  accept({
    what: '[B: 2 versions] mstore verify --all (bytes read)',
    value: `${secs(b.verifyMs)} (${mbps(b.j.bytes, b.verifyMs)} of ${mib(b.j.bytes)})`,
    ratio: `${x(bRatio)} openssl`,
    target: `>= ${TARGET.toFixed(2)}x`,
    pass: bRatio >= TARGET,
  });
  rows.push({
    what: '[B: 2 versions]   same, distinct chunk bytes',
    value: `${mbps(distinct, b.verifyMs)} of ${mib(distinct)}`,
    ratio: `${x(bDistinct)} openssl`,
    target: `context (${TARGET.toFixed(2)}x: ${bDistinct >= TARGET ? 'met' : 'not met'})`,
  });
  modes('B: 2 versions');

  // -------------------------------------------------------------- report
  const load1 = os.loadavg();
  process.stdout.write(`${table(rows)}\n\n${raw.join('\n')}\n`);
  process.stdout.write(
    `load average ${load0.map((l) => l.toFixed(2)).join(' ')} at start, ${load1.map((l) => l.toFixed(2)).join(' ')} at end` +
      ` (${os.cpus().length} cores; verify uses two threads, so any other job shows up in its ratio)\n` +
      `total bench time ${secs(performance.now() - t0)}\n\n`,
  );
  process.stdout.write(`SUMMARY (acceptance 6: verify --all >= ${TARGET.toFixed(2)}x openssl dgst -sha256 throughput)\n${table(summary)}\n`);
  failed = summary.some((r) => r.pass === false);
  process.stdout.write(`\n${failed ? 'FAIL' : 'PASS'}: ${summary.filter((r) => r.pass).length}/${summary.length} acceptance figures pass\n`);
} catch (e) {
  failed = true;
  process.stderr.write(`bench failed: ${(e as Error).stack ?? e}\n`);
  if (rows.length) process.stdout.write(`partial results:\n${table(rows)}\n`);
} finally {
  cleanup();
}
process.exitCode = failed ? 1 : 0;
