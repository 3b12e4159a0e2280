/**
 * `npm run bench:remote`: push and pull of a fresh 1 GiB safetensors version (24 BF16 tensors,
 * incompressible; MSTORE_BENCH_GIB) over loopback HTTP to `mstore serve`, against a plain
 * `curl -T` upload of the same file to a trivial node sink in the same run (issue 5,
 * acceptance 5: each ≥ 400 MB/s, and the ratio to curl).
 *
 * Per rep (MSTORE_BENCH_REPS, 3; interleaved so a burst of load elsewhere hits anchors and
 * mstore alike; each step after `sync`):
 *   - curl -T FILE to the sink, which drops the bytes (the transport's limit) and to the sink
 *     writing them to a file with fsync (an upload that stores the bytes durably, as push does),
 *     and to the sink hashing, writing and fsyncing them (the least a verifying receiver does);
 *     curl -o of the file from the sink (the download anchor);
 *   - `mstore push box --json` of v001 to a fresh bare store behind a fresh `mstore serve`;
 *   - `mstore pull box --json` of it into a fresh workspace store.
 * MB/s = payload bytes (bytesSent / bytesReceived) / wall time of the whole CLI process.
 * Where the time goes: the server's per-request log (time in uploads vs in the ref update, which
 * verifies the new version before refs move) and CPU seconds of client and server.
 * Env: MSTORE_BENCH_DIR (work dir), MSTORE_BENCH_GIB (1), MSTORE_BENCH_REPS (3), MSTORE_BENCH_CLI.
 * Exit status: 0 when both targets pass, 1 otherwise.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeSafetensors, listeningUrl } from '../test/helpers.js';
import { CLI, cliLine, envNumber, median, run, settle, table, UPLOAD_SINK, warm, x, type Ran, type Row, workDir } from './lib.js';

const GIB = envNumber('MSTORE_BENCH_GIB', 1);
const REPS = Math.max(1, Math.floor(envNumber('MSTORE_BENCH_REPS', 3)));
const TARGET_MBS = 400;
const TOKEN = `bench-${process.pid}-0123456789abcdef`;
const MB = 1e6;


const children: ChildProcess[] = [];

/** CPU seconds (user + system) of a live process, from /proc. */
function cpuOf(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

interface Served {
  child: ChildProcess;
  url: string;
  log: () => string;
}

async function serve(store: string, tokens: string): Promise<Served> {
  const child = spawn(process.execPath, [CLI, 'serve', store, '--listen', '127.0.0.1:0', '--tokens', tokens], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return { child, url: await listeningUrl(child), log: () => err };
}

/** Milliseconds the server spent in each kind of request, from its log lines. */
function serverTimes(log: string): { objects: number; update: number; other: number } {
  const t = { objects: 0, update: 0, other: 0 };
  for (const m of log.matchAll(/ (GET|POST) (\S+) \d+ in=\d+ out=\d+ (\d+)ms/g)) {
    const ms = Number(m[3]);
    if (m[2] === '/v1/objects' || m[2] === '/v1/fetch') t.objects += ms;
    else if (m[2] === '/v1/refs/update') t.update += ms;
    else t.other += ms;
  }
  return t;
}

/** Lets the child processes' output in (spawnSync blocks this process's event loop). */
const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 200));

// The model, its workspace store, the served store, the pulled store, the sink's copy: ~5x.
const { root } = workDir('mstore-bench-remote-', 5.5 * GIB * 2 ** 30);
let failed = false;
try {
  const load0 = os.loadavg()[0];
  const env = { BOX_TOKEN: TOKEN };
  const mstore = (cwd: string, args: string[]): Ran => run(process.execPath, [CLI, ...args], { cwd, env, rusage: true });
  const tokens = path.join(root, 'tokens');
  writeFileSync(tokens, `push ${TOKEN}\n`, { mode: 0o600 });

  const ws = path.join(root, 'ws');
  mkdirSync(ws);
  mstore(ws, ['init']);
  const rows = Math.max(1, Math.floor((GIB * 2 ** 30) / 24 / 4096 / 2));
  const model = path.join(ws, 'model.safetensors');
  writeSafetensors(model, Array.from({ length: 24 }, (_, i) => ({ name: `model.layers.${i}.mlp.weight`, dtype: 'BF16', shape: [rows, 4096], seed: i + 1 })));
  writeFileSync(path.join(ws, 'config.json'), '{"v":1}');
  mstore(ws, ['commit', '-m', 'one']);
  const size = statSync(model).size;
  warm(model);

  const sinkJs = path.join(root, 'sink.cjs');
  writeFileSync(sinkJs, UPLOAD_SINK);
  const sink = spawn(process.execPath, [sinkJs, path.join(root, 'sink.bin')], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(sink);
  const sinkUrl = await listeningUrl(sink);

  process.stdout.write(
    `mstore bench:remote: ${(size / 2 ** 30).toFixed(2)} GiB safetensors (24 BF16 tensors), ${REPS} reps, in ${root}\n${cliLine()}\n` +
      `${os.cpus().length} cpus, load average ${load0.toFixed(2)}\n\n`,
  );

  type Step = 'curlDiscard' | 'curlFile' | 'curlVerified' | 'curlGet' | 'push' | 'pull';
  const mbs: Record<Step, number[]> = { curlDiscard: [], curlFile: [], curlVerified: [], curlGet: [], push: [], pull: [] };
  const notes: string[] = [];
  const curl = (args: string[]): Ran => run('curl', ['-sS', '-f', '-o', '/dev/null', ...args], { rusage: true });
  for (let rep = 0; rep < REPS; rep++) {
    settle();
    mbs.curlDiscard.push(size / MB / (curl(['-T', model, `${sinkUrl}/discard`]).ms / 1000));
    settle();
    mbs.curlFile.push(size / MB / (curl(['-T', model, `${sinkUrl}/file`]).ms / 1000));
    settle();
    mbs.curlVerified.push(size / MB / (curl(['-T', model, `${sinkUrl}/verified`]).ms / 1000));
    settle();
    mbs.curlGet.push(size / MB / (curl([`${sinkUrl}/file`]).ms / 1000));

    const store = path.join(root, `store${rep}`);
    mstore(root, ['init', '--bare', store]);
    const server = await serve(store, tokens);
    const pid = server.child.pid!;
    if (rep > 0) mstore(ws, ['remote', 'remove', 'box']);
    mstore(ws, ['remote', 'add', 'box', server.url, '--token-env', 'BOX_TOKEN']);
    settle();
    let cpu0 = cpuOf(pid);
    const p = mstore(ws, ['push', 'box', '--json']);
    const pushCpu = cpuOf(pid) - cpu0;
    const sent = (JSON.parse(p.stdout) as { bytesSent: number }).bytesSent;
    mbs.push.push(sent / MB / (p.ms / 1000));
    await tick();
    const st = serverTimes(server.log());

    const dest = path.join(root, `pulled${rep}`);
    mkdirSync(dest);
    mstore(dest, ['init']);
    mstore(dest, ['remote', 'add', 'box', server.url, '--token-env', 'BOX_TOKEN']);
    settle();
    cpu0 = cpuOf(pid);
    const l = mstore(dest, ['pull', 'box', '--json']);
    const pullCpu = cpuOf(pid) - cpu0;
    const got = (JSON.parse(l.stdout) as { bytesReceived: number }).bytesReceived;
    mbs.pull.push(got / MB / (l.ms / 1000));
    await tick();
    const st2 = serverTimes(server.log());
    const c = (r: Ran): string => (r.cpu ? `${r.cpu.user.toFixed(2)}u+${r.cpu.sys.toFixed(2)}s, ${(r.cpu.maxKb / 1024).toFixed(0)} MiB RSS` : '?');
    notes.push(
      `rep ${rep + 1}: push ${(p.ms / 1000).toFixed(2)} s (client ${c(p)}; server ${pushCpu.toFixed(2)} s cpu, ` +
        `${(st.objects / 1000).toFixed(2)} s in uploads, ${(st.update / 1000).toFixed(2)} s in the ref update incl. verify, ${(st.other / 1000).toFixed(2)} s other)\n` +
        `       pull ${(l.ms / 1000).toFixed(2)} s (client ${c(l)}; server ${pullCpu.toFixed(2)} s cpu, ${((st2.objects - st.objects) / 1000).toFixed(2)} s in fetches)`,
    );
    server.child.kill('SIGTERM');
    rmSync(store, { recursive: true, force: true });
    rmSync(dest, { recursive: true, force: true });
  }
  const m = Object.fromEntries(Object.entries(mbs).map(([k, v]) => [k, median(v)])) as Record<Step, number>;
  const f = (v: number): string => `${v.toFixed(0)} MB/s`;
  const list: Row[] = [
    { what: 'curl -T to a node sink (bytes dropped)', value: f(m.curlDiscard), ratio: '1.00x', target: 'anchor' },
    { what: 'curl -T to a node sink (written + fsync)', value: f(m.curlFile), ratio: `${x(m.curlFile / m.curlDiscard)} curl`, target: 'anchor' },
    { what: 'curl -T to a node sink (sha256 + written + fsync)', value: f(m.curlVerified), ratio: `${x(m.curlVerified / m.curlDiscard)} curl`, target: 'anchor' },
    { what: 'curl GET from the node sink', value: f(m.curlGet), target: 'anchor' },
    { what: 'mstore push (fresh 1 GiB version)', value: f(m.push), ratio: `${x(m.push / m.curlDiscard)} curl; ${x(m.push / m.curlFile)} curl+fsync`, target: `>= ${TARGET_MBS} MB/s`, pass: m.push >= TARGET_MBS },
    { what: 'mstore pull (fresh 1 GiB version)', value: f(m.pull), ratio: `${x(m.pull / m.curlGet)} curl GET`, target: `>= ${TARGET_MBS} MB/s`, pass: m.pull >= TARGET_MBS },
  ];
  process.stdout.write(`${table(list)}\n\n`);
  const r0 = (xs: number[]): string => xs.map((v) => v.toFixed(0)).join(' ');
  process.stdout.write(
    `MB/s per rep: curl ${r0(mbs.curlDiscard)} | curl+fsync ${r0(mbs.curlFile)} | curl+sha256+fsync ${r0(mbs.curlVerified)} | curl GET ${r0(mbs.curlGet)} | push ${r0(mbs.push)} | pull ${r0(mbs.pull)}\n` +
      `${notes.join('\n')}\n` +
      `load average ${load0.toFixed(2)} at start, ${os.loadavg()[0].toFixed(2)} at end (2 cores: > ~0.5 at start means another job competed)\n`,
  );
  failed = list.some((r) => r.pass === false);
  process.stdout.write(`\n${failed ? 'FAIL' : 'PASS'}\n`);
} catch (e) {
  failed = true;
  process.stderr.write(`bench failed: ${(e as Error).stack ?? e}\n`);
} finally {
  for (const c of children) c.kill('SIGTERM');
  rmSync(root, { recursive: true, force: true });
}
process.exitCode = failed ? 1 : 0;
