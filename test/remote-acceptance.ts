/**
 * Issue 5's acceptance checks that every transport must pass the same way (path, HTTP, S3),
 * driven through the real CLI: the 1 GiB round trip with v004's dedup bound, and two clients
 * racing to push the same ref. Each transport's test file sets up its remote and calls these.
 */
import * as assert from 'uvu/assert';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { CLI, cleanup, git, mstore, treeDigest, writeSafetensors, type TensorSpec } from './helpers.js';

export const GIB = Number(process.env.MSTORE_TEST_LARGE_GIB ?? 1);
export const TENSORS = 24;
const COLS = 4096;
const ROWS = Math.ceil((GIB * 2 ** 30) / TENSORS / COLS / 2);
export const TENSOR_BYTES = ROWS * COLS * 2;

export interface PushJson {
  bytesSent: number;
  chunksSent: number;
  upToDate: boolean;
  refs: { ref: string; old: string | null; new: string | null }[];
}

export interface Transport {
  /** For messages: `path`, `http`, `s3 (RGW)`. */
  label: string;
  /** The remote's name in the pushing workspace (already added). */
  remote: string;
  /** Environment of push and pull (tokens). */
  env?: Record<string, string>;
  /** `mstore clone URL DIR ...ARGS` with this environment. */
  cloneUrl: string;
  cloneArgs?: string[];
  cloneEnv?: Record<string, string>;
  /** Transport-specific checks of the remote (complete versions, layout), after each push. */
  check?: (why: string) => void | Promise<void>;
}

let record: ((text: string) => void) | undefined;

/** Every command's stdout and stderr also go to `fn` (the HTTP tests search them for tokens). */
export function recordOutput(fn: (text: string) => void): void {
  record = fn;
}

export function ok(cwd: string, args: string[], env: Record<string, string> = {}): string {
  const r = mstore(cwd, args, env);
  record?.(`${r.stdout}\n${r.stderr}`);
  assert.is(r.code, 0, `mstore ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

export const okJson = <T>(cwd: string, args: string[], env: Record<string, string> = {}): T => JSON.parse(ok(cwd, [...args, '--json'], env)) as T;

function tensors(seeds: number[]): TensorSpec[] {
  return seeds.map((seed, i) => ({ name: `model.layers.${i}.mlp.down_proj.weight`, dtype: 'BF16', shape: [ROWS, COLS], seed }));
}

/**
 * The kill tests' workspace: `root/ws` with one version of 12 tensors x 16 MiB = 192 MiB, three
 * 64 MiB packs or requests (killed before, between and inside them). Returns the workspace.
 */
export function killWorkspace(root: string): string {
  const ws = path.join(root, 'ws');
  mkdirSync(ws);
  ok(ws, ['init']);
  writeSafetensors(path.join(ws, 'model.safetensors'), Array.from({ length: 12 }, (_, i) => ({ name: `t${i}`, dtype: 'BF16', shape: [2048, 4096], seed: 300 + i })));
  writeFileSync(path.join(ws, 'config.json'), '{"v":1}');
  ok(ws, ['commit', '-m', 'one']);
  return ws;
}

/**
 * v001–v003 (a GIB-sized safetensors file, config, adapter/, evolution/) pushed, pushed again
 * (nothing to send), cloned into `root/clone`, every version checked out byte for byte; then
 * v004 with a third of the tensors changed sends at most the changed bytes + 1 % and pulls
 * the same into the clone.
 */
export async function roundTrip(root: string, ws: string, t: Transport): Promise<void> {
  const env = t.env ?? {};
  mkdirSync(path.join(ws, 'adapter'), { recursive: true });
  mkdirSync(path.join(ws, 'evolution'), { recursive: true });
  const seeds = Array.from({ length: TENSORS }, (_, i) => i + 1);
  const digests: Map<string, string>[] = [];
  for (let v = 1; v <= 3; v++) {
    if (v === 2) seeds[0] += 1000;
    if (v === 3) seeds[5] += 1000;
    writeSafetensors(path.join(ws, 'model.safetensors'), tensors(seeds));
    writeFileSync(path.join(ws, 'config.json'), JSON.stringify({ revision: v }));
    writeFileSync(path.join(ws, 'adapter', 'adapter_config.json'), JSON.stringify({ r: 8 * v }));
    writeFileSync(path.join(ws, 'evolution', `step_${v}.json`), JSON.stringify({ step: v, loss: 1 / v }));
    ok(ws, ['commit', '-m', `round ${v}`]);
    digests.push(treeDigest(ws));
  }
  let t0 = process.hrtime.bigint();
  const first = okJson<PushJson>(ws, ['push', t.remote], env);
  const pushS = Number(process.hrtime.bigint() - t0) / 1e9;
  assert.equal(first.refs.map((r) => r.ref).sort(), ['refs/heads/latest', 'refs/tags/v001', 'refs/tags/v002', 'refs/tags/v003']);
  assert.ok(first.bytesSent >= 2 ** 30 * GIB * (26 / 24), `v001-v003 hold 26 distinct tensors; sent ${first.bytesSent}`);
  assert.ok(okJson<PushJson>(ws, ['push', t.remote], env).upToDate, 'a second push has nothing to send');
  await t.check?.('after the push');

  t0 = process.hrtime.bigint();
  const cloned = okJson<{ bytesReceived: number }>(root, ['clone', t.cloneUrl, 'clone', ...(t.cloneArgs ?? [])], t.cloneEnv);
  const cloneS = Number(process.hrtime.bigint() - t0) / 1e9;
  const clone = path.join(root, 'clone');
  assert.equal(treeDigest(clone), digests[2], 'clone checks out latest (v003)');
  for (let v = 1; v <= 3; v++) {
    const to = path.join(root, `out${v}`);
    ok(clone, ['checkout', `v00${v}`, '--to', to]);
    assert.equal(treeDigest(to), digests[v - 1], `v00${v} byte for byte`);
    cleanup(to);
  }
  console.log(
    `  ${t.label}: push ${(first.bytesSent / 1e6).toFixed(0)} MB in ${pushS.toFixed(1)} s = ${(first.bytesSent / 1e6 / pushS).toFixed(0)} MB/s; ` +
      `clone (fetch + verify + checkout) ${(cloned.bytesReceived / 1e6).toFixed(0)} MB in ${cloneS.toFixed(1)} s = ${(cloned.bytesReceived / 1e6 / cloneS).toFixed(0)} MB/s`,
  );

  // v004: every third tensor changes (8 of 24).
  for (let i = 0; i < TENSORS; i += 3) seeds[i] += 5000;
  writeSafetensors(path.join(ws, 'model.safetensors'), tensors(seeds));
  ok(ws, ['commit', '-m', 'round 4']);
  const changed = (TENSORS / 3) * TENSOR_BYTES;
  const p4 = okJson<PushJson>(ws, ['push', t.remote, 'v004'], env);
  assert.ok(p4.bytesSent <= changed * 1.01, `v004 sent ${p4.bytesSent} bytes; changed ${changed} (+1 % = ${Math.floor(changed * 1.01)})`);
  assert.ok(p4.bytesSent >= changed, `v004 must send the changed tensors (${changed}), sent ${p4.bytesSent}`);
  await t.check?.('after v004');
  const pulled = okJson<{ bytesReceived: number }>(clone, ['pull', 'origin'], t.cloneEnv);
  assert.ok(pulled.bytesReceived <= changed * 1.01, `pull of v004 received ${pulled.bytesReceived}`);
  ok(clone, ['checkout', 'v004', '--to', path.join(root, 'out4')]);
  assert.equal(treeDigest(path.join(root, 'out4')), treeDigest(ws));
}

/** Runs the CLI without blocking the event loop (two at once). */
export function runAsync(cwd: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [CLI, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1', ...env } });
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    c.on('exit', (code) => {
      record?.(`${out}\n${err}`);
      resolve({ code: code ?? -1, out, err });
    });
  });
}

/**
 * Two workspaces `a` and `b` (with the remote as `names`, at the same latest) commit a
 * different version and push it at the same moment, `rounds` times: exactly one wins, the
 * other exits 1 rejected as non-fast-forward, the remote has the winner's version; the loser
 * then takes the remote's history (pull --force; the winner has it already) and both go on. Returns the remote's latest.
 */
export async function racePushes(a: string, b: string, rounds: number, remoteLatest: () => string | Promise<string>, env: Record<string, string> = {}, names: [string, string] = ['origin', 'origin']): Promise<string> {
  const name = (ws: string): string => (ws === a ? names[0] : names[1]);
  let latest = '';
  for (let round = 0; round < rounds; round++) {
    writeFileSync(path.join(a, 'config.json'), JSON.stringify({ who: 'a', round }));
    writeFileSync(path.join(b, 'config.json'), JSON.stringify({ who: 'b', round }));
    ok(a, ['commit', '-m', `a ${round}`]);
    ok(b, ['commit', '-m', `b ${round}`]);
    const [ra, rb] = await Promise.all([runAsync(a, ['push', name(a)], env), runAsync(b, ['push', name(b)], env)]);
    const wins = [ra, rb].filter((r) => r.code === 0).length;
    assert.is(wins, 1, `round ${round}: exactly one push wins (a: ${ra.code} ${ra.err}; b: ${rb.code} ${rb.err})`);
    const loser = ra.code === 0 ? rb : ra;
    assert.is(loser.code, 1, `round ${round}: the loser exits 1`);
    assert.match(loser.err, /rejected .*non-fast-forward/);
    assert.is(loser.err.trim().split('\n').length, 1, `round ${round}: one line: ${loser.err}`);
    const [winner, loserDir] = ra.code === 0 ? [a, b] : [b, a];
    latest = await remoteLatest();
    assert.is(latest, git(path.join(winner, '.mstore', 'git'), ['rev-parse', 'latest']).stdout.trim(), `round ${round}: the remote has the winner's version`);
    // The loser's own version stays in its ref history; it takes the remote's.
    ok(loserDir, ['pull', name(loserDir), '--force'], env);
    assert.is(git(path.join(loserDir, '.mstore', 'git'), ['rev-parse', 'latest']).stdout.trim(), latest);
  }
  return latest;
}
