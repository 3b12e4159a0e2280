/**
 * A deploy box for tests: a real `mstore serve` (own process group) over a bare store with
 * deploy.json, the inference API stand-in (scripts/inference-standin.ts) as its own process,
 * and a workspace with the box as remote `box`. Used by deploy.test.ts and journal.test.ts.
 */
import * as assert from 'uvu/assert';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CLI, cleanup, listeningUrl, mstore, tmpDir, writeSafetensors } from './helpers.js';
import { commitHere } from './in-process.js';

export const TOKEN = 'deploy-test-push-token-0123456789';
export const READ_TOKEN = 'deploy-test-read-token-9876543210';
const STANDIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../scripts/inference-standin.js');

/**
 * The inference API stand-in as its own process: the tests drive the CLI synchronously, which
 * would starve an in-process server. Faults and state go over its /__standin routes.
 */
export interface Standin {
  url: string;
  port: number;
  child: ChildProcess;
  setFaults(f: Record<string, number>): Promise<void>;
  active(): Promise<string | null>;
  close(): Promise<void>;
}

export async function startStandin(port = 0): Promise<Standin> {
  const child = spawn(process.execPath, [STANDIN, '--port', String(port)], { stdio: ['ignore', 'pipe', 'ignore'] });
  const url = await listeningUrl(child);
  return {
    url,
    port: Number(new URL(url).port),
    child,
    setFaults: async (f) => {
      const r = await fetch(`${url}/__standin/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(f) });
      assert.is(r.status, 200);
    },
    active: async () => ((await (await fetch(`${url}/__standin/state`)).json()) as { active: string | null }).active,
    close: async () => {
      if (child.exitCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await gone;
    },
  };
}
export const ENV = { BOX_TOKEN: TOKEN };

export function ok(cwd: string, args: string[]): string {
  const r = mstore(cwd, args, ENV);
  assert.is(r.code, 0, `mstore ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

export interface Server {
  child: ChildProcess;
  url: string;
}

/** `mstore serve` in its own process group (so a kill -9 takes its hooks with it). */
export async function serve(store: string, tokens: string, port = 0): Promise<Server> {
  const child = spawn(process.execPath, [CLI, 'serve', store, '--listen', `127.0.0.1:${port}`, '--tokens', tokens], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NO_COLOR: '1' },
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const url = await listeningUrl(child).catch((e: Error) => {
    throw new Error(`${e.message}: ${err}`);
  });
  return { child, url };
}

export async function killGroup(s: Server, signal: NodeJS.Signals): Promise<void> {
  if (s.child.exitCode !== null || s.child.signalCode !== null) return;
  const gone = new Promise((r) => s.child.once('exit', r));
  try {
    process.kill(-s.child.pid!, signal);
  } catch {
    return;
  }
  await gone;
}

export interface Box {
  root: string;
  store: string;
  deployRoot: string;
  tokens: string;
  ws: string;
  standin: Standin;
  server: Server;
}

async function setup(root: string, startApi: () => Promise<Standin>): Promise<Box> {
  const standin = await startApi();
  const store = path.join(root, 'box');
  const deployRoot = path.join(root, 'deploy');
  ok(root, ['init', '--bare', store]);
  ok(root, ['-C', store, 'deploy', 'setup', '--root', deployRoot, '--api', standin.url]);
  // Fail fast in tests: two tries per call, 50 ms apart.
  const cfgFile = path.join(store, 'deploy.json');
  const cfg = JSON.parse(readFileSync(cfgFile, 'utf8')) as { api: Record<string, unknown> };
  cfg.api.attempts = 2;
  cfg.api.backoffMs = 50;
  cfg.api.timeoutMs = 5000;
  writeFileSync(cfgFile, JSON.stringify(cfg, null, 2));
  const tokens = path.join(root, 'tokens');
  writeFileSync(tokens, `push ${TOKEN}\nread ${READ_TOKEN}\n`);
  const server = await serve(store, tokens);
  const ws = path.join(root, 'ws');
  mkdirSync(ws);
  ok(ws, ['init']);
  ok(ws, ['remote', 'add', 'box', server.url, '--token-env', 'BOX_TOKEN']);
  return { root, store, deployRoot, tokens, ws, standin, server };
}

/** A new version of two BF16 tensors seeded by `seed`, committed in this process (set-up, not what the tests are about). */
export async function commitVersion(ws: string, seed: number, rows = 256): Promise<void> {
  writeSafetensors(path.join(ws, 'model.safetensors'), [
    { name: 'model.layers.0.mlp.weight', dtype: 'BF16', shape: [rows, 1024], seed },
    { name: 'model.layers.1.mlp.weight', dtype: 'BF16', shape: [rows, 1024], seed: seed + 1 },
  ]);
  writeFileSync(path.join(ws, 'config.json'), JSON.stringify({ seed }));
  await commitHere(ws, `seed ${seed}`);
}

export interface Status {
  live: { version: string } | null;
  history: { id: string; time: string; finished?: string; version: string; result: string; action: string; reason?: string }[];
}
export const status = (b: Box): Status => JSON.parse(ok(b.ws, ['deploy', 'status', 'box', '--json'])) as Status;
export const current = (b: Box): string => readlinkSync(path.join(b.deployRoot, 'current'));

async function teardown(b: Box | undefined): Promise<void> {
  if (!b) return;
  await killGroup(b.server, 'SIGTERM');
  await b.standin.close();
}

/**
 * Runs `fn` on a fresh box in a temporary directory; stops its processes and removes it
 * afterwards. `startApi`: the inference API (the stand-in by default; deploy-real.test.ts runs a
 * real one).
 */
export async function withBox(prefix: string, fn: (b: Box) => Promise<void>, startApi: () => Promise<Standin> = () => startStandin()): Promise<void> {
  const root = tmpDir(prefix);
  let b: Box | undefined;
  try {
    b = await setup(root, startApi);
    await fn(b);
  } finally {
    await teardown(b);
    cleanup(root);
  }
}
