/**
 * Acceptance at full size (1 GiB by default; MSTORE_TEST_LARGE_GIB changes it, e.g. 0.1 for a
 * quick run). One workspace, three versions:
 *   (a) every version checks out byte for byte (sha256 and mode of every file) and
 *       `mstore log --json` lists v003, v002, v001 with their descriptions and metrics;
 *   (b) real git reads the versions (log, show of .mstore/version.json, fsck --strict) and
 *       real git-lfs accepts each large file's blob as a canonical pointer whose oid is the
 *       sha256sum of the file (git-lfs rebuilds the pointer from the file and compares);
 *   (c) v002, in which a third of the tensors changed, grows .mstore on disk by at most the
 *       changed bytes + 1 %.
 * Needs git, git-lfs (apt-get install git-lfs), sha256sum and 8 GiB free (per GiB of model)
 * under MSTORE_TEST_TMP or the OS temp dir. A missing tool fails the test; it never skips.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { statfsSync, writeFileSync, mkdirSync, readdirSync, lstatSync, readFileSync, statSync } from 'node:fs';
import { CLI, cleanup, tmpDir, treeDigest, writeSafetensors, type TensorSpec } from './helpers.js';

const GIB = Number(process.env.MSTORE_TEST_LARGE_GIB ?? 1);
const TENSORS = 24;
const COLS = 4096;
// 24 BF16 tensors of ROWS x 4096: at least GIB gibibytes of tensor data (1 GiB + 32 KiB by default).
const ROWS = Math.ceil((GIB * 2 ** 30) / TENSORS / COLS / 2);
const TENSOR_BYTES = ROWS * COLS * 2;
/** Per mstore / git command; a hang fails the test instead of stalling CI. */
const CMD_TIMEOUT_MS = 5 * 60 * 1000;

interface Run {
  code: number | null;
  stdout: Buffer;
  stderr: string;
  error?: Error;
}

function run(cmd: string, args: string[], cwd?: string): Run {
  const r = spawnSync(cmd, args, {
    cwd,
    env: { ...process.env, NO_COLOR: '1' },
    maxBuffer: 64 * 1024 * 1024,
    timeout: CMD_TIMEOUT_MS,
  });
  return { code: r.status, stdout: r.stdout ?? Buffer.alloc(0), stderr: r.stderr?.toString() ?? '', error: r.error };
}

function describe(cmd: string, args: string[], r: Run): string {
  return `\`${cmd} ${args.join(' ')}\` exited ${r.code}${r.error ? ` (${r.error.message})` : ''}: ${r.stderr.trim()}`;
}

/** Runs and requires exit 0; returns stdout as text. */
function ok(cmd: string, args: string[], cwd?: string): string {
  const r = run(cmd, args, cwd);
  assert.is(r.code, 0, describe(cmd, args, r));
  return r.stdout.toString('utf8');
}

const mstore = (cwd: string, args: string[]): string => ok(process.execPath, [CLI, ...args], cwd);
const mstoreJson = <T>(cwd: string, args: string[]): T => JSON.parse(mstore(cwd, [...args, '--json'])) as T;
const gitOk = (gitdir: string, args: string[]): string => ok('git', [`--git-dir=${gitdir}`, ...args]);

function tensors(seeds: number[]): TensorSpec[] {
  return seeds.map((seed, i) => ({ name: `model.layers.${i}.mlp.down_proj.weight`, dtype: 'BF16', shape: [ROWS, COLS], seed }));
}

/** Apparent size of everything under dir (like `du -sb`, without directory entries). */
function diskBytes(dir: string): number {
  let total = 0;
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    const st = lstatSync(p);
    total += st.isDirectory() ? diskBytes(p) : st.size;
  }
  return total;
}

function requireTools(): void {
  const lfs = run('git', ['lfs', 'version']);
  assert.ok(
    lfs.code === 0 && /git-lfs\//.test(lfs.stdout.toString()),
    `git-lfs is required and \`git lfs version\` failed (${lfs.error?.message ?? (lfs.stderr.trim() || `exit ${lfs.code}`)}); install it: apt-get install -y git-lfs`,
  );
  const sum = run('sha256sum', ['--version']);
  assert.is(sum.code, 0, `the sha256sum binary is required (coreutils): ${sum.error?.message ?? sum.stderr}`);
  try {
    statSync(CLI);
  } catch {
    assert.unreachable(`${CLI} is missing: run \`npm run build\` first`);
  }
}

function requireFreeDisk(): void {
  const base = process.env.MSTORE_TEST_TMP ?? os.tmpdir();
  mkdirSync(base, { recursive: true });
  const s = statfsSync(base);
  const free = (s.bavail * s.bsize) / 2 ** 30;
  const need = 8 * GIB;
  assert.ok(free >= need, `needs ${need} GiB free under ${base} (set MSTORE_TEST_TMP to move it), has ${free.toFixed(2)} GiB`);
}

function sha256sum(file: string): string {
  const m = /^([0-9a-f]{64}) /.exec(ok('sha256sum', [file]));
  assert.ok(m, `sha256sum ${file} printed no digest`);
  return m![1];
}

/** `git ls-tree -r -l REV`: path -> { mode, oid, size }. */
function lsTree(gitdir: string, rev: string): Map<string, { mode: string; oid: string; size: number }> {
  const out = new Map<string, { mode: string; oid: string; size: number }>();
  for (const line of gitOk(gitdir, ['ls-tree', '-r', '-l', '-z', rev]).split('\0')) {
    if (!line) continue;
    const m = /^(\d+) blob ([0-9a-f]{40})\s+(\d+)\t(.*)$/s.exec(line);
    assert.ok(m, `unexpected ls-tree line: ${line}`);
    out.set(m![4], { mode: m![1], oid: m![2], size: Number(m![3]) });
  }
  return out;
}

/** A digest map as a sorted plain object, so a failed comparison prints a readable diff. */
function sorted(m: Map<string, string>): Record<string, string> {
  return Object.fromEntries([...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

const LFS_PREFIX = 'version https://git-lfs.github.com/spec/v1\n';

interface CommitJson {
  changed: boolean;
  version: string;
  commit: string;
  newBytes: number;
}
interface LogJson {
  version: string;
  commit: string;
  description: string;
  metrics: Record<string, unknown>;
}

test(`${GIB} GiB x 3 versions: byte-for-byte checkout, log; git, git-lfs and sha256sum agree; dedup within changed bytes + 1 %`, () => {
  const started = Date.now();
  assert.ok(Number.isFinite(GIB) && GIB > 0, `MSTORE_TEST_LARGE_GIB must be a positive number, got ${process.env.MSTORE_TEST_LARGE_GIB}`);
  requireTools();
  requireFreeDisk();
  const ws = tmpDir('mstore-large-');
  const aux = tmpDir('mstore-large-aux-');
  try {
    mstore(ws, ['init']);
    const store = path.join(ws, '.mstore');
    const gitdir = path.join(store, 'git');
    mkdirSync(path.join(ws, 'adapter'));
    mkdirSync(path.join(ws, 'evolution'));

    const seeds = Array.from({ length: TENSORS }, (_, i) => i + 1);
    const digests: Map<string, string>[] = [];
    const commits: CommitJson[] = [];
    const metrics: Record<string, unknown>[] = [];
    const growth: number[] = [];
    const changedBytes: number[] = [];
    const changedTensors = [TENSORS, 0, 0];

    for (let v = 1; v <= 3; v++) {
      // v002: every third tensor (8 of 24) gets new bytes; v003: one more tensor.
      const previous = [...seeds];
      if (v === 2) for (let i = 0; i < TENSORS; i += 3) seeds[i] += 1000;
      if (v === 3) seeds[1] += 1000;
      if (v > 1) changedTensors[v - 1] = seeds.filter((s, i) => s !== previous[i]).length;
      writeSafetensors(path.join(ws, 'model.safetensors'), tensors(seeds), { format: 'pt' });
      writeFileSync(path.join(ws, 'config.json'), JSON.stringify({ model_type: 'qwen3', hidden_size: COLS, revision: v }, null, 2));
      if (v !== 3) {
        // the adapter changes in v002 and stays as it is in v003
        writeFileSync(path.join(ws, 'adapter', 'adapter_config.json'), JSON.stringify({ r: 8 * v, lora_alpha: 16, target_modules: ['q_proj'] }));
        writeSafetensors(path.join(ws, 'adapter', 'adapter_model.safetensors'), [
          { name: 'base_model.model.q_proj.lora_A.weight', dtype: 'F32', shape: [8, COLS], seed: 7000 + v },
          { name: 'base_model.model.q_proj.lora_B.weight', dtype: 'F32', shape: [COLS, 8], seed: 8000 + v },
        ]);
      }
      writeFileSync(path.join(ws, 'evolution', `step_${String(v * 100).padStart(5, '0')}.json`), JSON.stringify({ step: v * 100, loss: 2 / v }));
      metrics.push({ loss: 2 / v, accuracy: 0.4 + v / 10, step: v * 100 });
      writeFileSync(path.join(aux, `metrics${v}.json`), JSON.stringify(metrics[v - 1]));

      const before = diskBytes(store);
      const t0 = Date.now();
      const r = mstoreJson<CommitJson>(ws, ['commit', '-m', `round ${v}`, '--metrics', path.join(aux, `metrics${v}.json`)]);
      const secs = (Date.now() - t0) / 1000;
      assert.ok(r.changed, `commit ${v} changed nothing`);
      assert.is(r.version, `v00${v}`);
      commits.push(r);
      growth.push(diskBytes(store) - before);
      const d = treeDigest(ws);
      digests.push(d);

      // Bytes that really changed: new tensors, plus every other file whose content changed.
      let changed = changedTensors[v - 1] * TENSOR_BYTES;
      if (v === 1) changed = statSync(path.join(ws, 'model.safetensors')).size;
      for (const [p, digest] of d) {
        if (p === 'model.safetensors') continue;
        if (v === 1 || digests[v - 2].get(p) !== digest) changed += statSync(path.join(ws, p)).size;
      }
      changedBytes.push(changed);
      process.stdout.write(
        `\n  v00${v}: commit ${secs.toFixed(1)} s; .mstore grew ${growth[v - 1]} B for ${changed} changed B ` +
          `(${changedTensors[v - 1]} of ${TENSORS} tensors; ${((growth[v - 1] / changed - 1) * 100).toFixed(3)} % over); newBytes ${r.newBytes}`,
      );
    }
    process.stdout.write('\n');
    assert.is(changedTensors[1], 8, 'fixture: v002 changes a third of the tensors');
    assert.is(changedTensors[2], 1, 'fixture: v003 changes one tensor');

    // (c) Dedup: v002 rewrote 1 GiB with 8 of 24 tensors new. Unchanged tensors must not be
    // stored again; the changed ones must (the data is incompressible).
    assert.ok(
      growth[1] <= changedBytes[1] * 1.01,
      `v002 grew .mstore by ${growth[1]} B; limit is changed bytes ${changedBytes[1]} + 1 % = ${Math.floor(changedBytes[1] * 1.01)}`,
    );
    assert.ok(growth[1] >= 8 * TENSOR_BYTES, `v002 grew .mstore by only ${growth[1]} B: the 8 changed tensors (${8 * TENSOR_BYTES} B) are not all stored`);
    assert.ok(commits[1].newBytes <= changedBytes[1] * 1.01, `v002 reports newBytes ${commits[1].newBytes} > changed bytes + 1 %`);

    // (a) Every version checks out byte for byte (sha256 and executable bit of every file, same file set).
    for (let v = 1; v <= 3; v++) {
      const dest = path.join(aux, `v${v}`);
      const t0 = Date.now();
      mstore(ws, ['checkout', `v00${v}`, '--to', dest]);
      const secs = (Date.now() - t0) / 1000;
      assert.equal(sorted(treeDigest(dest)), sorted(digests[v - 1]), `v00${v} differs after checkout --to (path -> sha256:mode)`);
      process.stdout.write(`  checkout v00${v}: ${secs.toFixed(1)} s\n`);
      cleanup(dest);
    }
    const log = mstoreJson<LogJson[]>(ws, ['log']);
    assert.equal(log.map((e) => e.version), ['v003', 'v002', 'v001']);
    assert.equal(log.map((e) => e.commit), commits.map((c) => c.commit).reverse());
    assert.equal(log.map((e) => e.description), ['round 3', 'round 2', 'round 1']);
    assert.equal(log.map((e) => e.metrics), [...metrics].reverse());

    // (b) Real git reads the history and the metadata; fsck --strict accepts every object.
    const gl = gitOk(gitdir, ['log', '--format=%H %s', 'v003']).trim().split('\n');
    assert.equal(gl, commits.map((c, i) => `${c.commit} round ${i + 1}`).reverse(), 'git log v003');
    for (let v = 1; v <= 3; v++) {
      const meta = JSON.parse(gitOk(gitdir, ['show', `v00${v}:.mstore/version.json`]));
      assert.is(meta.version, `v00${v}`);
      assert.is(meta.description, `round ${v}`);
      assert.equal(meta.metrics, metrics[v - 1]);
      assert.equal(meta.lineage.parent_versions, v === 1 ? [] : [`v00${v - 1}`]);
    }
    const fsck = run('git', [`--git-dir=${gitdir}`, 'fsck', '--strict']);
    assert.is(fsck.code, 0, describe('git', ['fsck', '--strict'], fsck));

    // (b) Which blobs are git-lfs pointers: exactly the two safetensors files, in every version;
    // the other files are stored as their own bytes.
    for (let v = 1; v <= 3; v++) {
      const tree = lsTree(gitdir, `v00${v}`);
      const lfs = new Map<string, string>();
      for (const [p, e] of tree) {
        if (p === '.mstore/version.json') continue;
        const blob = run('git', [`--git-dir=${gitdir}`, 'cat-file', 'blob', e.oid]);
        assert.is(blob.code, 0, blob.stderr);
        if (blob.stdout.subarray(0, LFS_PREFIX.length).toString() === LFS_PREFIX) {
          const m = /\noid sha256:([0-9a-f]{64})\nsize (\d+)\n$/.exec(blob.stdout.toString());
          assert.ok(m, `v00${v}:${p} is a malformed pointer`);
          lfs.set(p, m![1]);
          assert.is(`${m![1]}:-`, digests[v - 1].get(p), `v00${v}:${p} pointer oid is not the sha256 of the committed file`);
        } else {
          const own = createHash('sha256').update(blob.stdout).digest('hex');
          assert.is(`${own}:-`, digests[v - 1].get(p), `v00${v}:${p} git blob is not the file's bytes`);
        }
      }
      assert.equal([...lfs.keys()].sort(), ['adapter/adapter_model.safetensors', 'model.safetensors'], `v00${v} lfs files`);
      assert.equal(new Set([...tree.keys()].filter((p) => p !== '.mstore/version.json')), new Set(digests[v - 1].keys()), `v00${v} tree paths`);
    }

    // (b) git-lfs itself: the pointer is valid and canonical (--check --strict), and git-lfs,
    // hashing the workspace file itself, builds the same pointer (--file --pointer).
    for (const file of ['model.safetensors', 'adapter/adapter_model.safetensors']) {
      const pointerFile = path.join(aux, 'pointer');
      const blob = run('git', [`--git-dir=${gitdir}`, 'show', `v003:${file}`]);
      assert.is(blob.code, 0, blob.stderr);
      writeFileSync(pointerFile, blob.stdout);
      const check = run('git', ['lfs', 'pointer', '--check', '--strict', `--file=${pointerFile}`]);
      assert.is(check.code, 0, `git lfs pointer --check --strict v003:${file}: exit ${check.code} ${check.stderr}`);
      const text = readFileSync(pointerFile, 'utf8');
      const sum = sha256sum(path.join(ws, file));
      assert.match(text, `\noid sha256:${sum}\n`, `v003:${file} pointer oid vs sha256sum`);
      assert.match(text, `\nsize ${statSync(path.join(ws, file)).size}\n`, `v003:${file} pointer size`);
      const same = run('git', ['lfs', 'pointer', `--file=${path.join(ws, file)}`, `--pointer=${pointerFile}`]);
      assert.is(same.code, 0, `git-lfs builds a different pointer for ${file}: ${same.stderr}${same.stdout}`);
    }
    process.stdout.write(`  total ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  } finally {
    cleanup(ws);
    cleanup(aux);
  }
});

test.run();
