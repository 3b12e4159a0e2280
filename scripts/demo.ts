/**
 * `npm run demo`: the main job on the embedded default (a local store in a temporary
 * directory, no server, no network). It drives the real CLI and prints each command.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, readFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSafetensors, layerTensors, type TensorSpec, listeningUrl } from '../test/helpers.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.resolve(here, '../bundle/cli.js');
const root = mkdtempSync(path.join(os.tmpdir(), 'mstore-demo-'));
const ws = path.join(root, 'workspace');
mkdirSync(ws);

function say(text: string): void {
  process.stdout.write(`\n# ${text}\n`);
}

function run(args: string[], echoOutput: boolean): string {
  process.stdout.write(`$ mstore ${args.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(' ')}\n`);
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ws, encoding: 'utf8', env: { ...process.env, MSTORE_AUTHOR_NAME: 'demo' } });
  // stderr first: a push's `remote:` lines come before its summary.
  process.stderr.write(r.stderr);
  if (echoOutput) process.stdout.write(r.stdout);
  if (r.status !== 0) throw new Error(`mstore ${args[0]} exited ${r.status}`);
  return r.stdout;
}

const mstore = (...args: string[]): string => run(args, true);
/** For --json calls whose output the demo digests itself. */
const mstoreQuiet = (...args: string[]): string => run(args, false);

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/**
 * A safetensors file whose random values are all finite and small: the random bits are masked
 * to a narrow exponent range (BF16: ±2^-7..2^-6; F32 likewise), as real weights are.
 */
function writeFinite(file: string, specs: TensorSpec[]): void {
  writeSafetensors(file, specs);
  const buf = readFileSync(file);
  const start = 8 + Number(buf.readBigUInt64LE(0));
  if (specs.every((t) => t.dtype === 'BF16')) {
    const v = new Uint16Array(buf.buffer, buf.byteOffset + start, (buf.length - start) / 2);
    for (let i = 0; i < v.length; i++) v[i] = (v[i] & 0x807f) | 0x3c00;
  } else {
    const v = new Uint32Array(buf.buffer, buf.byteOffset + start, (buf.length - start) / 4);
    for (let i = 0; i < v.length; i++) v[i] = (v[i] & 0x807fffff) | 0x3c000000;
  }
  writeFileSync(file, buf);
}

/** One training round: a base-size model, an adapter, a learning-curve snapshot, metrics. */
function train(round: number, tensors: TensorSpec[]): void {
  writeFinite(path.join(ws, 'model.safetensors'), tensors);
  mkdirSync(path.join(ws, 'adapter'), { recursive: true });
  writeFileSync(path.join(ws, 'adapter', 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 16, lora_alpha: 32, target_modules: ['q_proj'] }, null, 2));
  writeFinite(
    path.join(ws, 'adapter', 'adapter_model.safetensors'),
    [0, 1].flatMap((l): TensorSpec[] => [
      { name: `base_model.model.model.layers.${l}.self_attn.q_proj.lora_A.weight`, dtype: 'F32', shape: [16, 2048], seed: 500 + round * 10 + l },
      { name: `base_model.model.model.layers.${l}.self_attn.q_proj.lora_B.weight`, dtype: 'F32', shape: [2048, 16], seed: 600 + round * 10 + l },
    ]),
  );
  writeFileSync(path.join(ws, 'config.json'), JSON.stringify({ model_type: 'qwen3', hidden_size: 1024, num_hidden_layers: 12 }, null, 2));
  mkdirSync(path.join(ws, 'evolution'), { recursive: true });
  const curve = Array.from({ length: 10 }, (_, i) => ({ step: (round - 1) * 1000 + (i + 1) * 100, loss: 2.5 / (round + i * 0.2) }));
  writeFileSync(path.join(ws, 'evolution', `round_${round}.json`), JSON.stringify(curve));
  writeFileSync(path.join(root, `metrics_${round}.json`), JSON.stringify({ loss: curve[curve.length - 1].loss, accuracy: 0.5 + round * 0.1 }));
  writeFileSync(path.join(root, `params_${round}.json`), JSON.stringify({ learning_rate: 1e-4 / round, epochs: 1, r: 16 }));
}

try {
  say(`A workspace in ${ws}; mstore keeps everything in its .mstore/ directory.`);
  mstore('init');

  say('Round 1: a 96 MiB model (12 BF16 tensors), an adapter, a learning curve. Commit it as v001.');
  const tensors = layerTensors(12, 2048, 2048, 1).map((t, i) => ({ ...t, name: `model.layers.${i}.self_attn.q_proj.weight` }));
  train(1, tensors);
  mstore('commit', '-m', 'initial fine-tune, math 10k', '--metrics', path.join(root, 'metrics_1.json'), '--params', path.join(root, 'params_1.json'), '--status', 'completed');

  say('Nothing changed: committing again creates nothing (an unchanged file costs a stat, not a hash).');
  mstore('commit', '-m', 'no-op');

  say('Round 2: 4 of the 12 tensors change. Only their bytes are stored again (tensor-aware chunking).');
  for (const i of [0, 3, 6, 9]) tensors[i] = { ...tensors[i], seed: tensors[i].seed + 100 };
  train(2, tensors);
  mstore('status');
  mstore('commit', '-m', 'reasoning focus', '--metrics', path.join(root, 'metrics_2.json'), '--params', path.join(root, 'params_2.json'), '--meta', 'dataset=reasoning_5k.jsonl');

  say('Round 3: the adapter and the curve only.');
  train(3, tensors);
  mstore('commit', '-m', 'longer schedule', '--metrics', path.join(root, 'metrics_3.json'), '--status', 'completed');

  say('The history, newest first, with sizes and key metrics.');
  mstore('log');

  say('What changed from v001 to v002: metadata, params, metrics, files, tensors (from chunk lists), text, curves.');
  mstore('diff', 'v001', 'v002', '--tensors');
  const showJson = (rev: string) => JSON.parse(mstoreQuiet('show', rev, '--json')) as { files: { path: string; size: number; oid: string }[] };
  const a = showJson('v001');

  say('Label a version after the fact (git notes), and list versions with metric columns.');
  mstore('label', 'v002', 'status=completed', 'eval_gsm8k=0.71');
  mstore('log', '--metrics', 'loss,accuracy');

  say('Name a version, and restore v001 elsewhere ("restore v001 to current_model/").');
  mstore('tag', 'production', 'v002');
  const restored = path.join(root, 'current_model');
  mstore('checkout', 'v001', '--to', restored);
  const v001Model = a.files.find((f) => f.path === 'model.safetensors')!;
  const ok = sha256(path.join(restored, 'model.safetensors')) === v001Model.oid;
  process.stdout.write(`  sha256 of restored model.safetensors matches v001: ${ok ? 'yes' : 'NO'}\n`);
  if (!ok) throw new Error('restored file differs');

  say('Real git reads the version records: `git --git-dir=.mstore/git log --oneline latest`');
  const gl = spawnSync('git', ['--git-dir=.mstore/git', 'log', '--oneline', 'latest'], { cwd: ws, encoding: 'utf8' });
  process.stdout.write(gl.status === 0 ? gl.stdout : '  (git is not installed)\n');

  say('Before anything is deleted: verify every byte, and keep a verified backup on a second disk.');
  mstore('verify', '--all');
  mstore('backup', 'add', 'disk2', path.join(root, 'backup-disk'));
  say('Remove v001: a pre-deletion backup is made and verified first; the ref history records the move.');
  mstore('rm', 'v001', '--confirm');
  mstore('reflog', '-n', '3');
  say('Changed your mind within the grace period? restore. Past it (after gc), the backup still has it.');
  mstore('restore', 'v001');
  mstore('rm', 'v001', '--confirm');
  mstore('gc', '--grace', '0');
  mstore('backup', 'restore', 'disk2', 'v001');
  mstore('log', '-n', '5');
  mstore('backup', 'list');

  say('The inference box: a bare store served over HTTP (mstore serve), deploying into a directory, and a');
  process.stdout.write('  stand-in of its inference API (seed 002: /health, /models register + set_active, /generate) on 127.0.0.1.\n');
  // Its own process: the demo runs the CLI synchronously, which would starve an in-process server.
  const standinProc = spawn(process.execPath, [path.join(here, 'inference-standin.js'), '--port', '0'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const standinUrl = await listeningUrl(standinProc);
  const activeModel = async (): Promise<string> => ((await (await fetch(`${standinUrl}/__standin/state`)).json()) as { active: string | null }).active ?? 'none';
  const box = path.join(root, 'inference-box');
  mstore('init', '--bare', box);
  mstore('-C', box, 'deploy', 'setup', '--root', path.join(root, 'deployed-models'), '--api', standinUrl);
  const token = randomBytes(16).toString('hex');
  writeFileSync(path.join(root, 'tokens'), `push ${token}\n`);
  process.env.MSTORE_BOX_TOKEN = token;
  process.stdout.write(`$ mstore serve ${box} --listen 127.0.0.1:0 --tokens tokens &\n`);
  const server = spawn(process.execPath, [CLI, 'serve', box, '--listen', '127.0.0.1:0', '--tokens', path.join(root, 'tokens')], { stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    const url = await listeningUrl(server);
    process.stdout.write(`  listening on ${url}\n`);
    mstore('remote', 'add', 'box', url, '--token-env', 'MSTORE_BOX_TOKEN');

    say('Deploy v003: push what the box lacks, move its `deployed` ref; its post-receive hook materialises and');
    process.stdout.write('  verifies the version, switches deployed-models/current atomically, registers and activates it.\n');
    mstore('deploy', 'box', 'v003');

    say('Consolidate: merge v003\'s adapter into its base model as a new version on the line "merged",');
    process.stdout.write('  then push and deploy it in the same command (verify, back up, hook: torch on a GPU if present, else the built-in worker; validate; commit).\n');
    mstore('consolidate', '--base', 'v003', '--adapter', 'v003', '--push', 'box', '--deploy');
    const merged = JSON.parse(mstoreQuiet('show', 'merged/v001', '--json')) as { meta: { lineage: { parent_versions: string[] } } };
    process.stdout.write(`  parents of merged/v001: ${merged.meta.lineage.parent_versions.join(' + ')}\n`);
    mstore('diff', 'v003', 'merged/v001', 'model.safetensors', '--tensors');
    process.stdout.write(`  the inference API's active model: ${await activeModel()}\n`);

    say('What is live on the box, and every deploy attempt. Then roll back: a switch, no transfer.');
    mstore('deploy', 'status', 'box');
    mstore('deploy', 'rollback', 'box');
    process.stdout.write(`  the inference API's active model: ${await activeModel()}\n`);

    say('The box verifies every byte it holds.');
    mstore('-C', box, 'verify', '--all');
  } finally {
    server.kill('SIGTERM');
    standinProc.kill('SIGTERM');
  }

  say(`Done. The store lives in ${ws}/.mstore and is removed now.`);
} finally {
  rmSync(root, { recursive: true, force: true });
}
