/**
 * Installable as a tool (issue 18, part 4). `npm pack` on a clean copy of the source (no dist/:
 * prepack builds) gives a tarball of what runs and nothing else; `npm install -g` of it into a
 * temporary prefix gives a `mstore` that works away from the source (its own node_modules, cwd
 * outside the checkout): init, commit, checkout, verify, serve with a push and a clone over
 * HTTP, and merge-lora, whose output equals this checkout's own CLI's byte for byte.
 * The install takes the registry's packages from npm's cache where `npm ci` left them.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanup, listeningUrl, mstore, sha256File, tmpDir, treeDigest, writeF32, writeModelDir } from './helpers.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const work = tmpDir('mstore-install-');
const prefix = path.join(work, 'prefix');
const installed = path.join(prefix, 'bin', 'mstore');
let tarball = '';

function sh(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1', ...env }, maxBuffer: 64 * 1024 * 1024, timeout: 300_000 });
}

function must(r: SpawnSyncReturns<string>, what: string): string {
  assert.is(r.status, 0, `${what} exited ${r.status ?? r.signal}: ${r.stderr}`);
  return r.stdout;
}

/** The installed CLI, found on PATH as a user would run it, with nothing of this checkout around. */
function run(cwd: string, args: string[], env: Record<string, string> = {}): string {
  const r = sh('mstore', args, cwd, { PATH: `${path.dirname(installed)}:${process.env.PATH ?? ''}`, NODE_PATH: '', ...env });
  return must(r, `installed mstore ${args.join(' ')}`);
}

test.after(() => cleanup(work));

test('npm pack of a clean copy of the source builds it and packs only what runs', () => {
  // A clean clone's files: tracked ones and new ones git would track; no dist/.
  const src = path.join(work, 'src');
  const files = must(sh('git', ['ls-files', '-co', '--exclude-standard', '-z'], ROOT), 'git ls-files').split('\0').filter(Boolean);
  for (const f of files) if (existsSync(path.join(ROOT, f))) cpSync(path.join(ROOT, f), path.join(src, f));
  assert.not.ok(existsSync(path.join(src, 'dist')), 'the copy has no build');
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(src, 'node_modules')); // what npm ci gives a clone
  const out = must(sh('npm', ['pack', '--json', '--pack-destination', work], src), 'npm pack');
  const packed = (JSON.parse(out.slice(out.indexOf('['))) as { filename: string; files: { path: string }[] }[])[0];
  tarball = path.join(work, packed.filename);
  const names = packed.files.map((f) => f.path);
  for (const need of ['dist/bundle/cli.js', 'dist/bundle/hash-worker.js', 'hooks/consolidate', 'hooks/post-receive', 'workers/merge_lora.py', 'docs/format.md', 'README.md', 'LICENSE', 'package.json']) {
    assert.ok(names.includes(need), `${need} is packed`);
  }
  const stray = names.filter((n) => /^(src|test|bench|scripts|dist\/src|dist\/test|dist\/bench|node_modules)\//.test(n) || n === 'tsconfig.json');
  assert.equal(stray, [], 'sources, tests, benches and build scripts are not packed');
});

test('npm install -g of the tarball gives a working mstore, away from the source', async () => {
  assert.ok(tarball, 'the pack test ran first');
  must(sh('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', tarball], work), 'npm install -g');
  assert.ok(existsSync(installed), 'bin/mstore is linked');
  const home = path.join(work, 'home');
  mkdirSync(home);
  assert.is(run(home, ['--version']).trim(), JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version);

  // A store: two versions, a checkout of the first, a full verify.
  const ws = path.join(home, 'ws');
  mkdirSync(ws);
  writeModelDir(ws, { step: 1 });
  run(ws, ['init']);
  run(ws, ['commit', '-m', 'first']);
  const first = sha256File(path.join(ws, 'adapter', 'adapter_model.safetensors'));
  writeModelDir(ws, { step: 2 });
  run(ws, ['commit', '-m', 'second']);
  const log = JSON.parse(run(ws, ['log', '--json'])) as { version: string }[];
  assert.equal(log.map((v) => v.version), ['v002', 'v001']);
  run(ws, ['checkout', 'v001', '--to', path.join(home, 'v001')]);
  assert.is(sha256File(path.join(home, 'v001', 'adapter', 'adapter_model.safetensors')), first);
  run(ws, ['verify', '--all']);

  // serve: a push over HTTP with a token, and a clone back.
  run(home, ['init', '--bare', 'box']);
  writeFileSync(path.join(home, 'tokens'), 'push install-test-token\n', { mode: 0o600 });
  const server = spawn('mstore', ['serve', path.join(home, 'box'), '--listen', '127.0.0.1:0', '--tokens', path.join(home, 'tokens')], {
    cwd: home,
    env: { ...process.env, PATH: `${path.dirname(installed)}:${process.env.PATH ?? ''}`, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  try {
    const url = await listeningUrl(server);
    const token = { BOX_TOKEN: 'install-test-token' };
    run(ws, ['remote', 'add', 'box', url, '--token-env', 'BOX_TOKEN']);
    run(ws, ['push', 'box'], token);
    run(home, ['clone', url, 'cloned', '--token-env', 'BOX_TOKEN'], token);
    assert.equal(treeDigest(path.join(home, 'cloned')), treeDigest(ws), 'the clone checks out what was pushed');
  } finally {
    server.kill('SIGTERM');
  }

  // merge-lora: the same bytes as this checkout's CLI writes for the same inputs.
  const H = 32;
  mkdirSync(path.join(home, 'base'));
  writeF32(path.join(home, 'base', 'model.safetensors'), [['model.layers.0.self_attn.q_proj.weight', [H, H], (i) => Math.sin(i * 0.37)]]);
  writeFileSync(path.join(home, 'base', 'config.json'), JSON.stringify({ model_type: 'qwen3', hidden_size: H }));
  mkdirSync(path.join(home, 'lora'));
  writeF32(path.join(home, 'lora', 'adapter_model.safetensors'), [
    ['base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', [4, H], (i) => Math.sin(i) * 0.05],
    ['base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', [H, 4], (i) => Math.cos(i * 0.5) * 0.05],
  ]);
  writeFileSync(path.join(home, 'lora', 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 4, lora_alpha: 8, target_modules: ['q_proj'] }));
  run(home, ['merge-lora', '--base', 'base', '--adapter', 'lora', '--out', 'merged']);
  const here = mstore(home, ['merge-lora', '--base', 'base', '--adapter', 'lora', '--out', 'merged-here']);
  assert.is(here.code, 0, here.stderr);
  assert.equal(treeDigest(path.join(home, 'merged')), treeDigest(path.join(home, 'merged-here')));
});

test.run();
