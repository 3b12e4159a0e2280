/**
 * `npm run bench:history` (issue 15): a store of MSTORE_BENCH_VERSIONS versions (1,000) of a
 * daily-training shape (bench/history-store.ts: a 2 MiB adapter changed a little each time,
 * metrics.json, one more evolution/*.json per version) plus MSTORE_BENCH_BIG (10) versions of a
 * MSTORE_BENCH_BIG_MIB (64) MiB model on a line of its own, and each operation on it beside an
 * anchor on the same data in the same run:
 *   - `mstore --version`: the start-up floor;
 *   - log -n 20, log, tag --list beside `git log` on .mstore/git;
 *   - status and a no-op commit;
 *   - verify --all --quick; fsck beside `git fsck` + `openssl dgst -sha256` over the pack bytes;
 *   - first push, backup and clone to/from an empty path remote beside `cp -r` of the store,
 *     and beside what every receiver re-reads: `verify --all` (each distinct file's bytes) and
 *     those bytes at openssl's sha256 rate (the floor of a transfer that keeps that check);
 *   - first push over loopback HTTP to `mstore serve` beside `curl -T` of the same bytes;
 *   - one new version pushed into the full remote beside start-up + 0.5 s + its bytes at
 *     the single-file push rate (a 1-version store pushed to an empty remote, same run).
 * Quick operations: medians of MSTORE_BENCH_REPS (3) interleaved reps; transfers: medians of
 * MSTORE_BENCH_TRANSFER_REPS (1). CPU seconds from GNU time. MSTORE_BENCH_STORE reuses a store
 * built before (it is copied, never changed). Exit status: 0 when every target passes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildHistory } from '../test/history-store.js';
import { listeningUrl } from '../test/helpers.js';
import { CLI, cliLine, envNumber, median, run, table, UPLOAD_SINK, x, type Ran, type Row, workDir } from './lib.js';

const VERSIONS = Math.max(2, Math.floor(envNumber('MSTORE_BENCH_VERSIONS', 1000)));
const BIG = Math.floor(envNumber('MSTORE_BENCH_BIG', 10));
const BIG_MIB = envNumber('MSTORE_BENCH_BIG_MIB', 64);
const REPS = Math.max(1, Math.floor(envNumber('MSTORE_BENCH_REPS', 3)));
const TRANSFER_REPS = Math.max(1, Math.floor(envNumber('MSTORE_BENCH_TRANSFER_REPS', 1)));
const TOKEN = `bench-${process.pid}-0123456789abcdef`;

const children: ChildProcess[] = [];
const cleanup = (): void => {
  for (const c of children) c.kill('SIGKILL');
};
process.on('exit', cleanup);

function duBytes(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) n += duBytes(p);
    else if (e.isFile()) n += statSync(p).size;
  }
  return n;
}

function filesUnder(dir: string, ext: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p, ext));
    else if (e.name.endsWith(ext)) out.push(p);
  }
  return out;
}

const secs = (ms: number): string => `${(ms / 1000).toFixed(3)} s`;
const cpu = (r: Ran[]): string => (r[0]?.cpu ? ` (cpu ${median(r.map((x) => x.cpu!.user + x.cpu!.sys)).toFixed(2)} s)` : '');

const { root } = workDir('mstore-bench-history-', (VERSIONS * 0.5 + BIG * BIG_MIB * 1.2) * 2 ** 20 * 8);
let failed = false;
try {
  const load0 = os.loadavg()[0];
  const given = process.env.MSTORE_BENCH_STORE;
  const built = path.join(root, 'built');
  if (given) {
    if (!existsSync(path.join(given, '.mstore'))) throw new Error(`MSTORE_BENCH_STORE=${given} holds no .mstore`);
    process.stdout.write(`copying ${given} ...\n`);
    cpSync(given, built, { recursive: true });
  } else {
    const t = performance.now();
    await buildHistory(built, {
      versions: VERSIONS,
      bigVersions: BIG,
      bigMiB: BIG_MIB,
      onVersion: (v) => {
        if (v % 100 === 0) process.stdout.write(`built ${v} versions in ${((performance.now() - t) / 1000).toFixed(0)} s\n`);
      },
    });
  }
  const ws = built;
  const gitdir = path.join(ws, '.mstore', 'git');
  const env = { BOX_TOKEN: TOKEN };
  const mstore = (cwd: string, args: string[]): Ran => run(process.execPath, [CLI, ...args], { cwd, env, rusage: true });
  // One writer run first: packs loose records and writes the caches, as any commit would have.
  mstore(ws, ['tag', 'bench-probe', 'latest']);
  mstore(ws, ['tag', '-d', 'bench-probe']);
  const storeBytes = duBytes(path.join(ws, '.mstore'));
  const packBytes = [...filesUnder(path.join(ws, '.mstore', 'packs'), ''), ...filesUnder(path.join(gitdir, 'objects'), '')].reduce((a, f) => a + statSync(f).size, 0);
  process.stdout.write(
    `mstore bench:history: ${VERSIONS} versions + ${BIG} x ${BIG_MIB} MiB, store ${(storeBytes / 2 ** 20).toFixed(0)} MiB, in ${root}\n${cliLine()}\n` +
      `${os.cpus().length} cpus, load average ${load0.toFixed(2)}; ${REPS} reps (transfers ${TRANSFER_REPS})\n\n`,
  );

  // Quick operations, interleaved.
  const quick: Record<string, { run: () => Ran; times: Ran[] }> = {
    'mstore --version': { run: () => mstore(ws, ['--version']), times: [] },
    'log -n 20': { run: () => mstore(ws, ['log', '-n', '20']), times: [] },
    log: { run: () => mstore(ws, ['log']), times: [] },
    'tag --list': { run: () => mstore(ws, ['tag', '--list']), times: [] },
    status: { run: () => mstore(ws, ['status']), times: [] },
    'no-op commit': { run: () => mstore(ws, ['commit', '-m', 'nothing new']), times: [] },
    'verify --all --quick': { run: () => mstore(ws, ['verify', '--all', '--quick']), times: [] },
    fsck: { run: () => mstore(ws, ['fsck']), times: [] },
    'git log -20': { run: () => run('git', ['--git-dir', gitdir, 'log', '-20', 'latest'], { rusage: true }), times: [] },
    'git log': { run: () => run('git', ['--git-dir', gitdir, 'log', 'latest'], { rusage: true }), times: [] },
    'git fsck': { run: () => run('git', ['--git-dir', gitdir, 'fsck'], { rusage: true }), times: [] },
    'openssl dgst -sha256 (packs)': { run: () => run('sh', ['-c', `find '${path.join(ws, '.mstore', 'packs')}' '${path.join(gitdir, 'objects')}' -type f -print0 | xargs -0 cat | openssl dgst -sha256`], { rusage: true }), times: [] },
  };
  for (let rep = 0; rep < REPS; rep++) for (const q of Object.values(quick)) q.times.push(q.run());
  const med = (k: string): number => median(quick[k].times.map((r) => r.ms));
  const startup = med('mstore --version');

  // Transfers to empty path remotes, beside cp -r of the store.
  const tr: Record<string, number[]> = { cp: [], verify: [], push: [], backup: [], clone: [], curl: [], http: [], one: [], single: [] };
  let sentBytes = 0;
  let distinctBytes = 0;
  const tokens = path.join(root, 'tokens');
  writeFileSync(tokens, `push ${TOKEN}\n`, { mode: 0o600 });
  for (let rep = 0; rep < TRANSFER_REPS; rep++) {
    const d = path.join(root, `t${rep}`);
    mkdirSync(d, { recursive: true });
    tr.cp.push(run('cp', ['-r', path.join(ws, '.mstore'), path.join(d, 'copy')]).ms);
    rmSync(path.join(d, 'copy'), { recursive: true, force: true });
    // What every receiver re-reads before a ref moves (docs/safety.md): each distinct file's bytes to its sha256.
    const verified = mstore(ws, ['verify', '--all', '--json']);
    tr.verify.push(verified.ms);
    try {
      distinctBytes = (JSON.parse(verified.stdout) as { bytes?: number }).bytes ?? distinctBytes;
    } catch {
      // no json
    }
    mstore(d, ['init', '--bare', 'remote']);
    const pushed = mstore(ws, ['push', path.join(d, 'remote'), '--json']);
    tr.push.push(pushed.ms);
    try {
      sentBytes = (JSON.parse(pushed.stdout) as { bytesSent?: number }).bytesSent ?? sentBytes;
    } catch {
      // older builds print no json
    }
    mstore(ws, ['backup', 'add', `b${rep}`, path.join(d, 'backup')]);
    tr.backup.push(mstore(ws, ['backup', `b${rep}`]).ms);
    tr.clone.push(mstore(d, ['clone', path.join(d, 'remote'), 'clone']).ms);
    rmSync(path.join(d, 'backup'), { recursive: true, force: true });
    rmSync(path.join(d, 'clone'), { recursive: true, force: true });

    // HTTP: the same history to a fresh served store, beside curl -T of the same bytes.
    const blob = path.join(d, 'all.bin');
    run('sh', ['-c', `find '${path.join(ws, '.mstore', 'packs')}' '${path.join(gitdir, 'objects')}' -type f -print0 | xargs -0 cat > '${blob}'`]);
    const sinkJs = path.join(d, 'sink.cjs');
    writeFileSync(sinkJs, UPLOAD_SINK);
    const sink = spawn(process.execPath, [sinkJs, path.join(d, 'sink.bin')], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(sink);
    tr.curl.push(run('curl', ['-sS', '-f', '-o', '/dev/null', '-T', blob, `${await listeningUrl(sink)}/file`]).ms);
    sink.kill('SIGTERM');
    mstore(d, ['init', '--bare', 'served']);
    const child = spawn(process.execPath, [CLI, 'serve', path.join(d, 'served'), '--listen', '127.0.0.1:0', '--tokens', tokens], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    const url = await listeningUrl(child);
    mstore(ws, ['remote', 'add', `box${rep}`, url, '--token-env', 'BOX_TOKEN']);
    tr.http.push(mstore(ws, ['push', `box${rep}`]).ms);
    mstore(ws, ['remote', 'remove', `box${rep}`]);
    child.kill('SIGTERM');
    rmSync(blob, { force: true });
    rmSync(path.join(d, 'served'), { recursive: true, force: true });

    // One new version into the full remote; the single-file push rate from a one-version store.
    writeFileSync(path.join(ws, 'metrics.json'), `{"bench": ${rep}, "t": ${Date.now()}}\n`);
    mstore(ws, ['commit', '-m', `bench one more ${rep}`]);
    tr.one.push(mstore(ws, ['push', path.join(d, 'remote')]).ms);
    const single = path.join(d, 'single');
    mkdirSync(single);
    cpSync(path.join(ws, 'adapter_model.safetensors'), path.join(single, 'adapter_model.safetensors'));
    mstore(single, ['init']);
    mstore(single, ['commit', '-m', 'one']);
    mstore(d, ['init', '--bare', 'single-remote']);
    tr.single.push(mstore(single, ['push', path.join(d, 'single-remote')]).ms);
    rmSync(d, { recursive: true, force: true });
  }
  const tm = (k: string): number => median(tr[k]);
  const adapterBytes = statSync(path.join(ws, 'adapter_model.safetensors')).size;
  // The single-file rate: what pushing one version costs beyond start-up, per byte.
  const perByte = Math.max(0, tm('single') - startup) / adapterBytes;

  const rows: Row[] = [];
  const add = (what: string, ms: number, anchorMs: number | undefined, limitMs: number, target: string, extra = ''): void => {
    rows.push({ what, value: `${secs(ms)}${extra}`, ratio: anchorMs ? x(ms / anchorMs) : undefined, target, pass: ms <= limitMs });
    if (ms > limitMs) failed = true;
  };
  rows.push({ what: 'mstore --version (start-up)', value: secs(startup) + cpu(quick['mstore --version'].times) });
  rows.push({ what: 'git log -20 / git log', value: `${secs(med('git log -20'))} / ${secs(med('git log'))}` });
  add('log -n 20', med('log -n 20'), undefined, startup + 50, 'start-up + 50 ms', cpu(quick['log -n 20'].times));
  add('log (all)', med('log'), undefined, startup + 300, 'start-up + 300 ms', cpu(quick.log.times));
  add('tag --list', med('tag --list'), undefined, startup + 300, 'start-up + 300 ms', cpu(quick['tag --list'].times));
  add('status', med('status'), undefined, startup + 100, 'start-up + 100 ms', cpu(quick.status.times));
  add('no-op commit', med('no-op commit'), undefined, startup + 100, 'start-up + 100 ms', cpu(quick['no-op commit'].times));
  add('verify --all --quick', med('verify --all --quick'), undefined, startup + 1000, 'start-up + 1 s', cpu(quick['verify --all --quick'].times));
  const fsckAnchor = med('git fsck') + med('openssl dgst -sha256 (packs)');
  rows.push({ what: 'git fsck + openssl over packs', value: secs(fsckAnchor) });
  add('fsck', med('fsck'), fsckAnchor, 3 * fsckAnchor + startup, '3x anchor + start-up', cpu(quick.fsck.times));
  rows.push({ what: 'cp -r of the store', value: secs(tm('cp')) });
  // The floor of a transfer that re-hashes every newly named file (as every receiver does): the
  // distinct file bytes at openssl's sha256 rate (measured above over the pack bytes), on one core.
  const opensslPerByte = med('openssl dgst -sha256 (packs)') / packBytes;
  rows.push({ what: `verify --all (${(distinctBytes / 2 ** 30).toFixed(2)} GiB of distinct files)`, value: secs(tm('verify')) });
  rows.push({ what: 'openssl sha256 rate x those bytes', value: secs(opensslPerByte * distinctBytes) });
  add('first push (path)', tm('push'), tm('cp'), 5 * tm('cp'), '5x cp -r');
  add('first backup (path)', tm('backup'), tm('cp'), 5 * tm('cp'), '5x cp -r');
  add('clone (path)', tm('clone'), tm('cp'), 5 * tm('cp'), '5x cp -r');
  rows.push({ what: 'curl -T of the same bytes', value: secs(tm('curl')) });
  add('first push (HTTP)', tm('http'), tm('curl'), 3 * tm('curl'), '3x curl');
  const oneLimit = startup + 500 + perByte * adapterBytes;
  add('one new version into the full remote', tm('one'), undefined, oneLimit, `start-up + 0.5 s + bytes (${secs(oneLimit)})`);
  process.stdout.write(`${table(rows)}\n\nbytes sent by the first push: ${sentBytes}; store ${storeBytes} bytes, packs ${packBytes} bytes\n`);
} finally {
  cleanup();
  rmSync(root, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
