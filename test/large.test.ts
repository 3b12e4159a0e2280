/**
 * Acceptance at full size (1 GiB by default, MSTORE_TEST_LARGE_GIB to change): three
 * versions of a workspace round-trip byte for byte, real git and git-lfs accept what mstore
 * wrote, and a version with a third of the tensors changed grows the store by no more than
 * the changed bytes + 1 %.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { statfsSync, writeFileSync, mkdirSync, readdirSync, lstatSync } from 'node:fs';
import { cleanup, git, mstore, mstoreJson, tmpDir, treeDigest, writeSafetensors, type TensorSpec } from './helpers.js';

const GIB = Number(process.env.MSTORE_TEST_LARGE_GIB ?? 1);
const TENSORS = 24;
// 24 BF16 tensors of ROWS x 4096 add up to GIB gibibytes (less a header).
const ROWS = Math.floor((GIB * 2 ** 30) / TENSORS / 4096 / 2);

function tensors(seeds: number[]): TensorSpec[] {
  return seeds.map((seed, i) => ({ name: `model.layers.${i}.mlp.down_proj.weight`, dtype: 'BF16', shape: [ROWS, 4096], seed }));
}

function duBytes(dir: string): number {
  let total = 0;
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    const st = lstatSync(p);
    total += st.isDirectory() ? duBytes(p) : st.size;
  }
  return total;
}

function requireFreeDisk(dir: string, gib: number): void {
  const s = statfsSync(dir);
  const free = (s.bavail * s.bsize) / 2 ** 30;
  assert.ok(free >= gib, `needs ${gib} GiB free in ${dir}, has ${free.toFixed(1)} GiB`);
}

test(`${GIB} GiB: three versions round-trip; git, git-lfs and sha256sum agree; dedup`, () => {
  const ws = tmpDir('mstore-large-');
  const out = tmpDir('mstore-large-out-');
  try {
    requireFreeDisk(ws, 8 * GIB);
    const lfs = spawnSync('git', ['lfs', 'version'], { encoding: 'utf8' });
    assert.is(lfs.status, 0, 'git-lfs must be installed (apt-get install git-lfs)');
    assert.is(mstore(ws, ['init']).code, 0);
    mkdirSync(path.join(ws, 'adapter'));
    mkdirSync(path.join(ws, 'evolution'));
    const seeds = Array.from({ length: TENSORS }, (_, i) => i + 1);
    const digests: Map<string, string>[] = [];
    const growth: number[] = [];
    for (let v = 1; v <= 3; v++) {
      if (v === 2) for (let i = 0; i < TENSORS; i += 3) seeds[i] += 1000; // a third of the tensors
      if (v === 3) seeds[1] += 1000;
      writeSafetensors(path.join(ws, 'model.safetensors'), tensors(seeds));
      writeFileSync(path.join(ws, 'config.json'), JSON.stringify({ model_type: 'qwen3', hidden_size: 4096, revision: v }));
      writeFileSync(path.join(ws, 'adapter', 'adapter_config.json'), JSON.stringify({ r: 8 * v, lora_alpha: 16 }));
      writeSafetensors(path.join(ws, 'adapter', 'adapter_model.safetensors'), [
        { name: 'base_model.model.q_proj.lora_A.weight', dtype: 'F32', shape: [8, 4096], seed: 7000 + v },
        { name: 'base_model.model.q_proj.lora_B.weight', dtype: 'F32', shape: [4096, 8], seed: 8000 + v },
      ]);
      writeFileSync(path.join(ws, 'evolution', `step_${v * 100}.json`), JSON.stringify({ step: v * 100, loss: 2 / v }));
      writeFileSync(path.join(out, `metrics${v}.json`), JSON.stringify({ loss: 2 / v, accuracy: 0.4 + v / 10 }));
      const before = duBytes(path.join(ws, '.mstore'));
      const r = mstoreJson<{ version: string; newBytes: number }>(ws, ['commit', '-m', `round ${v}`, '--metrics', path.join(out, `metrics${v}.json`)]);
      assert.is(r.version, `v00${v}`);
      growth.push(duBytes(path.join(ws, '.mstore')) - before);
      digests.push(treeDigest(ws));
    }

    // Dedup: v002 changed 8 of 24 tensors in place.
    const tensorBytes = ROWS * 4096 * 2;
    const changed = 8 * tensorBytes;
    process.stdout.write(`\n  v002 grew the store by ${growth[1]} bytes for ${changed} changed tensor bytes (${((growth[1] / changed - 1) * 100).toFixed(3)} % over)\n`);
    assert.ok(growth[1] <= changed * 1.01, `v002 grew the store by ${growth[1]}, limit ${changed * 1.01}`);
    assert.ok(growth[1] >= changed, 'the changed tensors must really be stored');

    // Round trip, byte for byte.
    for (let v = 1; v <= 3; v++) {
      const dest = path.join(out, `v${v}`);
      const r = mstore(ws, ['checkout', `v00${v}`, '--to', dest]);
      assert.is(r.code, 0, r.stderr);
      assert.equal(treeDigest(dest), digests[v - 1], `v00${v} differs after checkout`);
      cleanup(dest);
    }
    const log = mstoreJson<{ version: string; description: string; metrics: { loss: number } }[]>(ws, ['log']);
    assert.equal(log.map((e) => e.version), ['v003', 'v002', 'v001']);
    assert.equal(log.map((e) => e.description), ['round 3', 'round 2', 'round 1']);
    assert.is(log[2].metrics.loss, 2);

    // Real git and git-lfs.
    const gitdir = path.join(ws, '.mstore', 'git');
    const gl = git(gitdir, ['log', '--format=%H', 'v003']);
    assert.is(gl.code, 0, gl.stderr);
    assert.is(gl.stdout.trim().split('\n').length, 3);
    const meta = JSON.parse(git(gitdir, ['show', 'v003:.mstore/version.json']).stdout);
    assert.is(meta.version, 'v003');
    assert.is(meta.description, 'round 3');
    const fsck = git(gitdir, ['fsck', '--strict']);
    assert.is(fsck.code, 0, fsck.stderr);
    for (const file of ['model.safetensors', 'adapter/adapter_model.safetensors']) {
      const pointerFile = path.join(out, 'pointer');
      writeFileSync(pointerFile, git(gitdir, ['show', `v003:${file}`]).stdout);
      const check = spawnSync('git', ['lfs', 'pointer', '--check', '--file', pointerFile], { encoding: 'utf8' });
      assert.is(check.status, 0, `git lfs pointer --check ${file}: ${check.stderr}`);
      const sum = spawnSync('sha256sum', [path.join(ws, file)], { encoding: 'utf8' }).stdout.split(' ')[0];
      assert.match(git(gitdir, ['show', `v003:${file}`]).stdout, `oid sha256:${sum}\n`);
    }
  } finally {
    cleanup(ws);
    cleanup(out);
  }
});

test.run();
