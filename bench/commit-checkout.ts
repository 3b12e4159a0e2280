/**
 * `npm run bench`: commit, no-op commit, checkout, dedup and peak memory of mstore on generated
 * safetensors files (24 BF16 tensors, incompressible), against anchors measured in the same run:
 * `openssl dgst -sha256` (the hashing limit) and `cp` (the copy limit), plus git-lfs and restic
 * when installed: `restic backup` and `restic restore` of the same file run inside the
 * interleaved reps, and commit must take at most half of restic backup's wall time, checkout
 * half of restic restore's with no more system time (issue 15). Every timing is the wall time of a real process (performance.now around
 * spawnSync), node startup included; anchors and mstore steps are medians of MSTORE_BENCH_REPS
 * interleaved reps, each step started after `sync` (no dirty pages; the input stays in the page
 * cache). Ratios are ratios of those medians; the per-rep ratios and CPU times are printed too.
 *
 * Env: MSTORE_BENCH_DIR (work dir; default os.tmpdir()), MSTORE_BENCH_GIB (1), MSTORE_BENCH_RSS_GIB
 * (4; 0 skips), MSTORE_BENCH_REPS (3), MSTORE_BENCH_CLI (the CLI file; default the esbuild bundle
 * when it is at least as new as dist/src/cli/main.js, else dist/src/cli/main.js).
 * Exit status: 0 when every acceptance figure passes, 1 otherwise.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeSafetensors, type TensorSpec } from '../test/helpers.js';
import { BUNDLE_CLI, CLI, DIST, MiB, SRC_CLI, cliLine, envNumber as num, have, median, mib, run, secs, settle, table, warm, x, type Ran, type Row, workDir } from './lib.js';

const OTHER_CLI = CLI === BUNDLE_CLI ? SRC_CLI : CLI === SRC_CLI && existsSync(BUNDLE_CLI) ? BUNDLE_CLI : undefined;

const GIB = num('MSTORE_BENCH_GIB', 1);
const RSS_GIB = num('MSTORE_BENCH_RSS_GIB', 4);
const REPS = Math.max(1, Math.floor(num('MSTORE_BENCH_REPS', 3)));
const TENSORS = 24;
const CHANGED = 8; // tensors changed in place for v2: a third

// ---------------------------------------------------------------- helpers







/** Apparent size in bytes, as `du -sb`. */
function du(dir: string): number {
  if (!existsSync(dir)) return 0;
  return Number(run('du', ['-sb', dir]).stdout.split(/\s/)[0]);
}


function tensors(seeds: number[], gib: number): TensorSpec[] {
  const rows = Math.max(1, Math.floor((gib * 2 ** 30) / seeds.length / 4096 / 2));
  return seeds.map((seed, i) => ({ name: `model.layers.${i}.mlp.weight`, dtype: 'BF16', shape: [rows, 4096], seed }));
}

const openssl = (file: string): Ran => run('openssl', ['dgst', '-sha256', file]);
const digestOf = (r: Ran): string => r.stdout.trim().split(/\s/).pop()!;
const mstore = (cwd: string, args: string[], cli = CLI): Ran => run(process.execPath, [cli, ...args], { cwd, rusage: true });

const rows: Row[] = [];
const summary: Row[] = [];
const accept = (r: Row): void => {
  rows.push(r);
  summary.push(r);
};


// ---------------------------------------------------------------- setup

// Peak use: v1 + v2 masters, a workspace copy, its store, a checkout / cp copy (~5x), or the
// big file and its store (2x RSS_GIB); plus headroom.
const { root, cleanup } = workDir('mstore-bench-', Math.max(5.5 * GIB, 2.2 * RSS_GIB) * 2 ** 30 + 2 ** 30);

let failed = false;
try {
  const load0 = os.loadavg()[0];
  const seeds1 = Array.from({ length: TENSORS }, (_, i) => i + 1);
  // v2: 8 of 24 tensors (every third) get new bytes; same names, shapes and offsets.
  const changedIdx = Array.from({ length: CHANGED }, (_, k) => k * 3);
  const seeds2 = seeds1.map((s, i) => (changedIdx.includes(i) ? s + 1000 : s));

  const v1 = path.join(root, 'v1.safetensors');
  const v2 = path.join(root, 'v2.safetensors');
  writeSafetensors(v1, tensors(seeds1, GIB));
  writeSafetensors(v2, tensors(seeds2, GIB));
  const size = statSync(v1).size;
  const tensorBytes = tensors(seeds1, GIB)[0].shape.reduce((a, b) => a * b, 1) * 2;
  const changedBytes = CHANGED * tensorBytes;
  const mbps = (ms: number): string => `${(size / MiB / (ms / 1000)).toFixed(0)} MiB/s`;

  const ws = path.join(root, 'ws');
  mkdirSync(ws);
  const file = path.join(ws, 'model.safetensors');
  run('cp', [v1, file]);
  settle();
  warm(file);
  process.stdout.write(
    `mstore bench: ${(size / 2 ** 30).toFixed(2)} GiB safetensors (${TENSORS} BF16 tensors), ${REPS} reps, ` +
      `in ${root}\n${cliLine()}\n` +
      `${os.cpus().length} cpus, load average ${load0.toFixed(2)}\n\n`,
  );

  // -------------------------------------------------------------- 1-3: anchors, commit, no-op, checkout
  // Interleaved: each rep runs every anchor and every mstore step, so a burst of load from
  // elsewhere (or the VM's memory state) hits a rep's anchor and its mstore steps alike.
  type Step = 'openssl' | 'cp' | 'cpSync' | 'commit' | 'noop' | 'checkout' | 'resticBackup' | 'resticRestore';
  const t: Record<Step, number[]> = { openssl: [], cp: [], cpSync: [], commit: [], noop: [], checkout: [], resticBackup: [], resticRestore: [] };
  const cpu: Partial<Record<Step, string[]>> = {};
  const sys: Partial<Record<Step, number[]>> = {};
  const note = (k: Step, r: Ran): number => {
    t[k].push(r.ms);
    if (r.cpu) {
      (cpu[k] ??= []).push(`${r.cpu.user.toFixed(2)}u+${r.cpu.sys.toFixed(2)}s`);
      (sys[k] ??= []).push(r.cpu.sys);
    }
    return r.ms;
  };
  // restic backup and restore of the same file, interleaved with mstore's commit and checkout
  // (issue 15: checkout and commit against restic, sys time included), a fresh repository each rep.
  const withRestic = have('restic', ['version']);
  const dst = path.join(root, 'cp.bin');
  const out = path.join(root, 'out');
  let want = '';
  const checkedOut: boolean[] = [];
  for (let i = 0; i < REPS; i++) {
    settle();
    const o = run('openssl', ['dgst', '-sha256', file], { rusage: true });
    note('openssl', o);
    want = digestOf(o);
    settle();
    const c = note('cp', run('cp', [file, dst], { rusage: true }));
    t.cpSync.push(c + run('sync', []).ms);
    rmSync(dst);
    rmSync(path.join(ws, '.mstore'), { recursive: true, force: true });
    mstore(ws, ['init']);
    settle();
    note('commit', mstore(ws, ['commit', '-m', 'bench']));
    settle();
    // A 0.3 s figure on a 2-core VM swings by ±50 ms from run to run: three samples per rep.
    for (let k = 0; k < 3; k++) note('noop', mstore(ws, ['commit', '-m', 'again']));
    settle();
    note('checkout', mstore(ws, ['checkout', 'v001', '--to', out]));
    // correctness, not timed
    checkedOut.push(digestOf(openssl(path.join(out, 'model.safetensors'))) === want);
    rmSync(out, { recursive: true });
    if (withRestic) {
      const env = { RESTIC_PASSWORD: 'bench', RESTIC_REPOSITORY: path.join(root, `restic-rep-${i}`), RESTIC_CACHE_DIR: path.join(root, 'restic-rep-cache') };
      run('restic', ['init', '-q'], { env });
      settle();
      note('resticBackup', run('restic', ['backup', '-q', file], { env, rusage: true }));
      settle();
      note('resticRestore', run('restic', ['restore', '-q', 'latest', '--target', out], { env, rusage: true }));
      rmSync(out, { recursive: true, force: true });
      rmSync(env.RESTIC_REPOSITORY, { recursive: true, force: true });
    }
  }
  let otherNoop: number | undefined;
  if (OTHER_CLI) {
    const ms: number[] = [];
    for (let i = 0; i < REPS; i++) ms.push(mstore(ws, ['commit', '-m', 'again'], OTHER_CLI).ms);
    otherNoop = median(ms);
  }
  const m = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, median(v)])) as Record<Step, number>;

  rows.push({ what: 'openssl dgst -sha256', value: `${secs(m.openssl)} (${mbps(m.openssl)})`, ratio: '1.00x', target: 'anchor' });
  rows.push({ what: 'cp (no fsync)', value: `${secs(m.cp)} (${mbps(m.cp)})`, ratio: '1.00x', target: 'anchor' });
  rows.push({ what: 'cp + sync (durable copy)', value: `${secs(m.cpSync)} (${mbps(m.cpSync)})`, ratio: `${x(m.cpSync / m.cp)} cp`, target: 'context' });
  const commitRatio = m.commit / m.openssl;
  accept({ what: 'mstore commit (fresh file)', value: `${secs(m.commit)} (${mbps(m.commit)})`, ratio: `${x(commitRatio)} openssl`, target: '<= 2.00x (goal 1.25x)', pass: commitRatio <= 2.0 });
  accept({ what: 'mstore commit (nothing changed)', value: secs(m.noop), target: '<= 0.30 s', pass: m.noop <= 300 });
  if (otherNoop !== undefined && OTHER_CLI) {
    rows.push({ what: `  same, via ${path.relative(DIST, OTHER_CLI)}`, value: secs(otherNoop), target: 'context' });
  }
  const coRatio = m.checkout / m.cp;
  // A checkout that checks each file's sha256 while writing reads and hashes every byte at
  // least once: one openssl pass is its floor, whatever it does in parallel.
  rows.push({ what: 'floor of a verified checkout: one sha256 pass', value: secs(m.openssl), ratio: `${x(m.openssl / m.cp)} cp`, target: 'context' });
  accept({ what: 'mstore checkout v001 --to', value: `${secs(m.checkout)} (${mbps(m.checkout)})`, ratio: `${x(coRatio)} cp; ${x(m.checkout / m.cpSync)} cp+sync`, target: '<= 2.50x (goal 1.25x)', pass: coRatio <= 2.5 });
  if (withRestic) {
    const sysOf = (k: Step): number => median(sys[k] ?? [0]);
    rows.push({ what: 'restic backup (same file)', value: `${secs(m.resticBackup)} (sys ${sysOf('resticBackup').toFixed(2)} s)`, ratio: `${x(m.commit / m.resticBackup)} mstore commit`, target: 'anchor' });
    rows.push({ what: 'restic restore (same file)', value: `${secs(m.resticRestore)} (sys ${sysOf('resticRestore').toFixed(2)} s)`, ratio: `${x(m.checkout / m.resticRestore)} mstore checkout`, target: 'anchor' });
    accept({ what: 'mstore commit vs restic backup', value: secs(m.commit), ratio: `${x(m.commit / m.resticBackup)} restic backup`, target: '<= 0.50x', pass: m.commit <= 0.5 * m.resticBackup });
    accept({ what: 'mstore checkout vs restic restore', value: secs(m.checkout), ratio: `${x(m.checkout / m.resticRestore)} restic restore`, target: '<= 0.50x', pass: m.checkout <= 0.5 * m.resticRestore });
    accept({ what: 'mstore checkout sys vs restic restore sys', value: `${sysOf('checkout').toFixed(2)} s`, ratio: `restic ${sysOf('resticRestore').toFixed(2)} s`, target: "<= restic's", pass: sysOf('checkout') <= sysOf('resticRestore') });
  }
  accept({ what: 'checkout sha256 == original', value: `${checkedOut.filter(Boolean).length}/${checkedOut.length} match`, target: 'all', pass: checkedOut.every(Boolean) });

  // -------------------------------------------------------------- 4: dedup, v2 with a third of the tensors changed in place
  const before = du(path.join(ws, '.mstore'));
  writeSafetensors(file, tensors(seeds2, GIB)); // same inode, same layout, 8 tensors rewritten
  settle();
  warm(file);
  const c2 = mstore(ws, ['commit', '-m', 'v2', '--json']);
  const growth = du(path.join(ws, '.mstore')) - before;
  const newBytes = (JSON.parse(c2.stdout) as { newBytes?: number }).newBytes;
  rows.push({ what: `mstore commit v2 (${CHANGED}/${TENSORS} changed)`, value: secs(c2.ms), ratio: `${x(c2.ms / m.openssl)} openssl`, target: 'context' });
  accept({
    what: 'mstore store growth for v2',
    value: mib(growth),
    ratio: `${((growth / changedBytes) * 100).toFixed(2)} % of changed (${mib(changedBytes)})`,
    target: '<= changed + 1 %',
    pass: growth <= changedBytes * 1.01,
  });
  if (newBytes !== undefined) rows.push({ what: '  newBytes reported by commit --json', value: mib(newBytes), target: 'context' });
  rmSync(ws, { recursive: true, force: true });

  // -------------------------------------------------------------- 5: peak RSS of a fresh big commit
  if (RSS_GIB > 0) {
    const big = path.join(root, 'big');
    mkdirSync(big);
    const bigFile = path.join(big, 'model.safetensors');
    writeSafetensors(bigFile, tensors(Array.from({ length: TENSORS }, (_, i) => 5000 + i), RSS_GIB));
    const bigSize = statSync(bigFile).size;
    mstore(big, ['init']);
    settle();
    const r = run('/usr/bin/time', ['-f', '%M', process.execPath, CLI, 'commit', '-m', 'rss'], { cwd: big });
    const kb = Number(r.stderr.trim().split('\n').pop());
    const mb = (kb * 1024) / 1e6;
    accept({ what: `peak RSS, commit of ${(bigSize / 2 ** 30).toFixed(2)} GiB`, value: `${mb.toFixed(0)} MB`, ratio: `(took ${secs(r.ms)}, ${(bigSize / MiB / (r.ms / 1000)).toFixed(0)} MiB/s)`, target: '<= 300 MB', pass: mb <= 300 });
    rmSync(big, { recursive: true, force: true });
    spawnSync('sync');
  }

  // -------------------------------------------------------------- 6: git-lfs and restic on the same v1 -> v2 files
  if (have('git', ['lfs', 'version'])) {
    const repo = path.join(root, 'lfs');
    mkdirSync(repo);
    const g = (args: string[]): Ran => run('git', ['-c', 'user.name=bench', '-c', 'user.email=bench@example.com', ...args], { cwd: repo });
    g(['init', '-q']);
    g(['lfs', 'install', '--local']);
    g(['lfs', 'track', '*.safetensors']);
    g(['add', '.gitattributes']);
    g(['commit', '-qm', 'attributes']);
    const f = path.join(repo, 'model.safetensors');
    run('cp', [v1, f]);
    settle();
    warm(f);
    const add1 = g(['add', 'model.safetensors']).ms;
    g(['commit', '-qm', 'v1']);
    const lfsBefore = du(path.join(repo, '.git', 'lfs'));
    run('cp', [v2, f]);
    settle();
    warm(f);
    const add2 = g(['add', 'model.safetensors']).ms;
    g(['commit', '-qm', 'v2']);
    const lfsGrowth = du(path.join(repo, '.git', 'lfs')) - lfsBefore;
    rows.push({ what: 'git-lfs: git add v1', value: `${secs(add1)} (${mbps(add1)})`, ratio: `${x(add1 / m.openssl)} openssl; ${x(add1 / m.commit)} mstore`, target: 'comparison' });
    rows.push({ what: 'git-lfs: git add v2', value: secs(add2), ratio: `${x(add2 / m.openssl)} openssl`, target: 'comparison' });
    rows.push({ what: 'git-lfs: .git/lfs growth for v2', value: mib(lfsGrowth), ratio: `${((lfsGrowth / changedBytes) * 100).toFixed(0)} % of changed`, target: 'comparison' });
    rmSync(repo, { recursive: true, force: true });
  } else rows.push({ what: 'git-lfs', value: 'skipped (not installed)' });

  if (have('restic', ['version'])) {
    const repo = path.join(root, 'restic');
    const data = path.join(root, 'restic-data');
    mkdirSync(data);
    const env = { RESTIC_PASSWORD: 'bench', RESTIC_REPOSITORY: repo, RESTIC_CACHE_DIR: path.join(root, 'restic-cache') };
    run('restic', ['init', '-q'], { env });
    const f = path.join(data, 'model.safetensors');
    run('cp', [v1, f]);
    settle();
    warm(f);
    const b1 = run('restic', ['backup', '-q', data], { env }).ms;
    const repoBefore = du(repo);
    run('cp', [v2, f]);
    settle();
    warm(f);
    const b2 = run('restic', ['backup', '-q', data], { env }).ms;
    const rGrowth = du(repo) - repoBefore;
    rows.push({ what: 'restic: backup v1', value: `${secs(b1)} (${mbps(b1)})`, ratio: `${x(b1 / m.openssl)} openssl; ${x(b1 / m.commit)} mstore`, target: 'comparison' });
    rows.push({ what: 'restic: backup v2', value: secs(b2), ratio: `${x(b2 / m.openssl)} openssl`, target: 'comparison' });
    rows.push({ what: 'restic: repo growth for v2', value: mib(rGrowth), ratio: `${((rGrowth / changedBytes) * 100).toFixed(0)} % of changed`, target: 'comparison' });
    rmSync(repo, { recursive: true, force: true });
    rmSync(data, { recursive: true, force: true });
  } else rows.push({ what: 'restic', value: 'skipped (not installed)' });

  // -------------------------------------------------------------- report
  const r0 = (xs: number[]): string => xs.map((v) => Math.round(v)).join(' ');
  const perRep = (a: number[], b: number[]): string => a.map((v, i) => (v / b[i]).toFixed(2)).join(' ');
  process.stdout.write(`${table(rows)}\n\n`);
  process.stdout.write(
    `raw wall ms per rep: openssl ${r0(t.openssl)} | cp ${r0(t.cp)} | cp+sync ${r0(t.cpSync)} | commit ${r0(t.commit)} | no-op ${r0(t.noop)} | checkout ${r0(t.checkout)}\n` +
      `per-rep ratios: commit/openssl ${perRep(t.commit, t.openssl)} | checkout/cp ${perRep(t.checkout, t.cp)} | checkout/(cp+sync) ${perRep(t.checkout, t.cpSync)}\n` +
      `cpu s per rep (user+sys): ${Object.entries(cpu).map(([k, v]) => `${k} ${v!.join(' ')}`).join(' | ')}\n` +
      `load average ${load0.toFixed(2)} at start, ${os.loadavg()[0].toFixed(2)} at end (2 cores: > ~0.5 at start means another job competed)\n\n`,
  );
  const goal = (r: number): string => (r <= 1.25 ? 'goal met' : 'goal not met');
  process.stdout.write(`SUMMARY (acceptance)\n${table(summary)}\n`);
  process.stdout.write(`commit ${x(commitRatio)} openssl: ${goal(commitRatio)}; checkout ${x(coRatio)} cp: ${goal(coRatio)}\n`);
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
