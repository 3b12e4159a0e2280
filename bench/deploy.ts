/**
 * `npm run bench:deploy`: a 1 GiB model (MSTORE_BENCH_GIB) deployed to a box on 127.0.0.1 —
 * `mstore serve` over a bare store with deploy.json, the inference API stand-in — then a second
 * version, then `mstore deploy rollback` timed as a whole process (target: under 1 s: the
 * directory is already on the box, so a rollback is a switch and two API calls). Anchors:
 * `cp` of the model file (what a hand-made deploy costs at least) and the CLI's own start-up.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { writeSafetensors, listeningUrl } from '../test/helpers.js';
import { CLI, DIST, cliLine, envNumber, median, run, secs, settle, table, x, type Row, workDir } from './lib.js';

const GIB = envNumber('MSTORE_BENCH_GIB', 1);
const ROUNDS = 5;

// The model, the workspace store, the box's store, two deployed directories, a cp copy: ~6x.
const { root } = workDir('mstore-bench-deploy-', 6.5 * GIB * 2 ** 30);
const children: ChildProcess[] = [];
try {
  console.log(cliLine());
  const standin = spawn(process.execPath, [path.join(DIST, 'scripts', 'inference-standin.js'), '--port', '0'], { stdio: ['ignore', 'pipe', 'ignore'] });
  children.push(standin);
  const api = await listeningUrl(standin);
  const box = path.join(root, 'box');
  const mstore = (cwd: string, ...args: string[]): string => run(process.execPath, [CLI, ...args], { cwd, env: { BOX_TOKEN: 'bench-token-0123456789abcdef' } }).stdout;
  mstore(root, 'init', '--bare', box);
  mstore(root, '-C', box, 'deploy', 'setup', '--root', path.join(root, 'deploy'), '--api', api);
  writeFileSync(path.join(root, 'tokens'), 'push bench-token-0123456789abcdef\n');
  const server = spawn(process.execPath, [CLI, 'serve', box, '--listen', '127.0.0.1:0', '--tokens', path.join(root, 'tokens')], { stdio: ['ignore', 'pipe', 'ignore'] });
  children.push(server);
  const url = await listeningUrl(server);

  const ws = path.join(root, 'ws');
  mkdirSync(ws);
  mstore(ws, 'init');
  mstore(ws, 'remote', 'add', 'box', url, '--token-env', 'BOX_TOKEN');
  const rows = Math.ceil((GIB * 2 ** 30) / 24 / 4096 / 2);
  const seeds = Array.from({ length: 24 }, (_, i) => i + 1);
  const model = path.join(ws, 'model.safetensors');
  const write = (): void => writeSafetensors(model, seeds.map((seed, i) => ({ name: `model.layers.${i}.mlp.weight`, dtype: 'BF16', shape: [rows, 4096], seed })));
  write();
  writeFileSync(path.join(ws, 'config.json'), '{"v":1}');
  mstore(ws, 'commit', '-m', 'one');
  for (let i = 0; i < 24; i += 3) seeds[i] += 1000;
  write();
  writeFileSync(path.join(ws, 'config.json'), '{"v":2}');
  mstore(ws, 'commit', '-m', 'two');
  const bytes = statSync(model).size;

  settle();
  const d1 = run(process.execPath, [CLI, 'deploy', 'box', 'v001'], { cwd: ws, env: { BOX_TOKEN: 'bench-token-0123456789abcdef' } });
  settle();
  const d2 = run(process.execPath, [CLI, 'deploy', 'box', 'v002'], { cwd: ws, env: { BOX_TOKEN: 'bench-token-0123456789abcdef' } });
  const rollbacks: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    settle();
    rollbacks.push(run(process.execPath, [CLI, 'deploy', 'rollback', 'box'], { cwd: ws, env: { BOX_TOKEN: 'bench-token-0123456789abcdef' } }).ms);
  }
  const live = JSON.parse(mstore(ws, 'deploy', 'status', 'box', '--json')) as { history: { action: string; result: string }[] };
  if (live.history.slice(0, ROUNDS).some((a) => a.action !== 'rollback' || a.result !== 'ok')) throw new Error('a rollback did not succeed');
  const startup = median([0, 1, 2].map(() => run(process.execPath, [CLI, '--version']).ms));
  settle();
  const cpMs = run('cp', [model, path.join(root, 'copy.safetensors')]).ms;
  rmSync(path.join(root, 'copy.safetensors'));
  const rb = median(rollbacks);
  const list: Row[] = [
    { what: `model (${(bytes / 2 ** 30).toFixed(2)} GiB safetensors)`, value: '' },
    { what: 'cp of the model file', value: secs(cpMs) },
    { what: 'mstore --version (CLI start-up)', value: secs(startup) },
    { what: `deploy v001 (push ${GIB} GiB + materialise + verify + API)`, value: secs(d1.ms), ratio: `${x(d1.ms / cpMs)} cp` },
    { what: 'deploy v002 (a third changed)', value: secs(d2.ms), ratio: `${x(d2.ms / cpMs)} cp` },
    { what: `deploy rollback (median of ${ROUNDS}: ${rollbacks.map((m) => (m / 1000).toFixed(2)).join(' ')})`, value: secs(rb), ratio: `${x(rb / cpMs)} cp`, target: '< 1 s', pass: rb < 1000 },
  ];
  console.log(table(list));
} finally {
  for (const c of children) c.kill('SIGTERM');
  rmSync(root, { recursive: true, force: true });
}
