/**
 * The corruption matrix (issue 3, acceptance point 1), through the real CLI. One pristine
 * store with three versions that share some chunks and not others; each case copies it,
 * damages exactly one thing, and checks that `verify --all` (or `fsck`) finds it, exits 1,
 * names the versions that need the damaged thing, and reports every other version ok.
 *
 * Targets are located without mstore's index: chunk ids are computed from the committed
 * files (sha256 of each planned chunk, docs/format.md §4), their places from the packs' own
 * tables (§5), git objects with real git. Real `git fsck --strict` is the second opinion on
 * the git cases.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { cleanup, git, mstore, tmpDir, treeDigest, writeSafetensors, type RunResult, type TensorSpec } from './helpers.js';

// ---------------------------------------------------------------------------------------
// Types of the JSON the commands print (src/ops/integrity/verify.ts, fsck.ts).

interface VerifyJson {
  ok: boolean;
  mode: string;
  versions: { name: string; commit: string; ok: boolean; problems: string[] }[];
  problems: { versions: string[]; files: string[]; chunk?: string; pack?: string; message: string }[];
  files: number;
  chunks: number;
  bytes: number;
}

interface FsckJson {
  ok: boolean;
  problems: string[];
  notes: string[];
  repaired?: { packsIndexed: number; damagedPacks: string[] };
  packs: { total: number; damaged: number; unindexed: number };
  git: { objects: number; damaged: number };
}

// ---------------------------------------------------------------------------------------
// The fixture: three versions of a model directory.

const VERSIONS = ['v001', 'v002', 'v003'] as const;
type Version = (typeof VERSIONS)[number];
const MiB = 1024 * 1024;

/** Tensor seeds of model.safetensors per version (8 BF16 tensors of 1 MiB each). */
const MODEL_SEEDS: Record<Version, number[]> = {
  v001: [1, 2, 3, 4, 5, 6, 7, 8],
  v002: [101, 102, 3, 4, 5, 6, 7, 8], // tensors 0, 1 new (101 only here; 102 kept by v003)
  v003: [201, 102, 3, 304, 5, 6, 7, 8], // tensor 3 new: seed 4 is in v001 and v002 only
};
const ADAPTER_SEEDS: Record<Version, number[]> = { v001: [900, 950], v002: [900, 950], v003: [901, 951] };

function modelTensors(seeds: number[]): TensorSpec[] {
  return seeds.map((seed, i) => ({ name: `model.layers.${i}.mlp.weight`, dtype: 'BF16', shape: [512, 1024], seed }));
}

function writeVersion(ws: string, v: Version): void {
  mkdirSync(path.join(ws, 'adapter'), { recursive: true });
  writeSafetensors(path.join(ws, 'model.safetensors'), modelTensors(MODEL_SEEDS[v]));
  writeFileSync(path.join(ws, 'config.json'), JSON.stringify({ model_type: 'qwen3', hidden_size: 1024, rev: v === 'v001' ? 1 : 2 }, null, 2));
  writeFileSync(path.join(ws, 'adapter', 'adapter_config.json'), JSON.stringify({ r: 8, lora_alpha: 16 }));
  writeSafetensors(path.join(ws, 'adapter', 'adapter_model.safetensors'), [
    { name: 'lora_A.weight', dtype: 'F32', shape: [8, 512], seed: ADAPTER_SEEDS[v][0] },
    { name: 'lora_B.weight', dtype: 'F32', shape: [512, 8], seed: ADAPTER_SEEDS[v][1] },
  ]);
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * The chunk ids mstore must have stored for a file (docs/format.md §4.1-4.3, default
 * config): one chunk up to 1 MiB, else the safetensors plan: header region, then each
 * tensor, cut into 4 MiB pieces counted from the region's start.
 */
function plannedChunks(file: string): string[] {
  const data = readFileSync(file);
  if (data.length <= MiB) return [sha256(data)];
  const n = Number(data.readBigUInt64LE(0));
  const dataStart = 8 + n;
  const header = JSON.parse(data.subarray(8, dataStart).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
  const regions: [number, number][] = [[0, dataStart]];
  const tensors = Object.entries(header).filter(([k]) => k !== '__metadata__').map(([, t]) => t.data_offsets);
  tensors.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  for (const [b, e] of tensors) regions.push([dataStart + b, dataStart + e]);
  const ids: string[] = [];
  for (const [s, e] of regions) for (let p = s; p < e; p += 4 * MiB) ids.push(sha256(data.subarray(p, Math.min(e, p + 4 * MiB))));
  return ids;
}

interface PackEntry {
  type: number;
  id: string;
  offset: number;
  length: number;
}
interface PackScan {
  id: string;
  file: string;
  size: number;
  tableStart: number;
  entries: PackEntry[];
}

/** Every pack of a store, read from the pack files alone (docs/format.md §5.1). */
function scanPacks(storeDir: string): PackScan[] {
  const out: PackScan[] = [];
  const packsDir = path.join(storeDir, 'packs');
  for (const sub of readdirSync(packsDir).sort()) {
    for (const name of readdirSync(path.join(packsDir, sub)).sort()) {
      const m = /^([0-9a-f]{64})\.pack$/.exec(name);
      if (!m) continue;
      const file = path.join(packsDir, sub, name);
      const data = readFileSync(file);
      assert.is(data.subarray(0, 8).toString('latin1'), 'MSTPACK\x01', `${name}: header magic`);
      assert.is(data.subarray(data.length - 8).toString('latin1'), 'MSTPEND\x01', `${name}: end magic`);
      const count = data.readUInt32LE(data.length - 12);
      const tableStart = data.length - 44 - 37 * count;
      const table = data.subarray(tableStart, data.length - 44);
      assert.is(sha256(table), m[1], `${name}: sha256(table) is the pack id`);
      assert.is(data.subarray(data.length - 44, data.length - 12).toString('hex'), m[1], `${name}: footer hash`);
      const entries: PackEntry[] = [];
      let off = 8;
      for (let i = 0; i < count; i++) {
        const r = table.subarray(37 * i, 37 * (i + 1));
        const e = { type: r[0], length: r.readUInt32LE(1), id: r.subarray(5).toString('hex'), offset: off };
        entries.push(e);
        off += e.length;
      }
      assert.is(off, tableStart, `${name}: entries end where the table starts`);
      out.push({ id: m[1], file, size: data.length, tableStart, entries });
    }
  }
  return out;
}

/** Every git object a version's commit needs: the commit, its tree, every subtree and blob. */
function gitObjectsOf(gitdir: string, v: string): Set<string> {
  const commit = gitOk(gitdir, ['rev-parse', '--verify', `${v}^{commit}`]).trim();
  const tree = gitOk(gitdir, ['rev-parse', '--verify', `${v}^{tree}`]).trim();
  const set = new Set([commit, tree]);
  for (const line of gitOk(gitdir, ['ls-tree', '-r', '-t', tree]).split('\n')) {
    const m = /^\d+ \w+ ([0-9a-f]{40})\t/.exec(line);
    if (m) set.add(m[1]);
  }
  return set;
}

function gitOk(gitdir: string, args: string[]): string {
  const r = git(gitdir, args);
  assert.is(r.code, 0, `git ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

interface Fixture {
  root: string;
  pristine: string;
  /** treeDigest of the workspace as each version was committed. */
  digests: Map<Version, Map<string, string>>;
  /** Chunk ids (hex) each version's lfs files consist of. */
  chunks: Map<Version, Set<string>>;
  /** The chunk ids of each model.safetensors, in file order (header first). */
  modelChunks: Map<Version, string[]>;
  /** Git objects each version's commit needs. */
  objects: Map<Version, Set<string>>;
  packs: PackScan[];
}

let fx: Fixture;

function build(): Fixture {
  const root = tmpDir('mstore-verify-');
  const pristine = path.join(root, 'pristine');
  mkdirSync(pristine);
  assert.is(mstore(pristine, ['init']).code, 0);
  const digests = new Map<Version, Map<string, string>>();
  const chunks = new Map<Version, Set<string>>();
  const modelChunks = new Map<Version, string[]>();
  for (const v of VERSIONS) {
    writeVersion(pristine, v);
    // a pinned clock: the same git objects (so the same damaged bytes) on every run
    const r = mstore(pristine, ['commit', '-m', `version ${v}`, '--json'], { MSTORE_NOW: `2025-11-16T14:3${v.slice(-1)}:00Z` });
    assert.is(r.code, 0, r.stderr);
    assert.is((JSON.parse(r.stdout) as { version: string }).version, v);
    digests.set(v, treeDigest(pristine));
    const model = plannedChunks(path.join(pristine, 'model.safetensors'));
    assert.is(model.length, 9, 'header + 8 tensors');
    modelChunks.set(v, model);
    chunks.set(v, new Set([...model, ...plannedChunks(path.join(pristine, 'adapter', 'adapter_model.safetensors'))]));
  }
  const gitdir = path.join(pristine, '.mstore', 'git');
  const objects = new Map<Version, Set<string>>(VERSIONS.map((v) => [v, gitObjectsOf(gitdir, v)]));
  const packs = scanPacks(path.join(pristine, '.mstore'));
  // The locator agrees with the store: every planned chunk is in exactly one pack.
  const where = new Map<string, number>();
  for (const p of packs) for (const e of p.entries) if (e.type === 1) where.set(e.id, (where.get(e.id) ?? 0) + 1);
  for (const [v, set] of chunks) for (const id of set) assert.is(where.get(id), 1, `${v}: chunk ${id} stored once`);
  // The pristine store is sound, by every judge.
  const ver = verifyJson(pristine);
  assert.is(ver.code, 0, ver.raw);
  assert.equal(ver.json.versions.map((x) => [x.name, x.ok]), VERSIONS.map((v) => [v, true]));
  assert.is(fsckJson(pristine).code, 0);
  assert.is(git(gitdir, ['fsck', '--strict']).code, 0);
  return { root, pristine, digests, chunks, modelChunks, objects, packs };
}

test.before(() => {
  fx = build();
});

test.after(() => {
  if (fx) cleanup(fx.root);
});

// ---------------------------------------------------------------------------------------
// Damage and judgement.

let caseNo = 0;

/** A fresh copy of the pristine store (cp -a: git objects stay read-only, as written). */
function copyStore(): string {
  const dir = path.join(fx.root, `case-${++caseNo}`);
  const r = spawnSync('cp', ['-a', fx.pristine, dir]);
  assert.is(r.status, 0, String(r.stderr));
  return dir;
}

function packFile(ws: string, p: PackScan): string {
  return path.join(ws, '.mstore', path.relative(path.join(fx.pristine, '.mstore'), p.file));
}

/** Inverts the byte at `offset` of `file` (making it writable first). */
function flipByte(file: string, offset: number): void {
  chmodSync(file, statSync(file).mode | 0o200);
  const fd = openSync(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    assert.is(readSync(fd, b, 0, 1, offset), 1, `${file}: byte ${offset} exists`);
    b[0] ^= 0xff;
    writeSync(fd, b, 0, 1, offset);
  } finally {
    closeSync(fd);
  }
}

function looseObject(ws: string, oid: string): string {
  return path.join(ws, '.mstore', 'git', 'objects', oid.slice(0, 2), oid.slice(2));
}

/** Flips the middle byte of a loose git object (well inside the deflate stream). */
function damageGitObject(ws: string, oid: string): void {
  const file = looseObject(ws, oid);
  const size = statSync(file).size;
  assert.ok(size > 16, `${oid}: loose object of ${size} bytes`);
  flipByte(file, Math.floor(size / 2));
}

function packOf(chunk: string): { pack: PackScan; entry: PackEntry } {
  for (const pack of fx.packs) for (const entry of pack.entries) if (entry.type === 1 && entry.id === chunk) return { pack, entry };
  throw new Error(`chunk ${chunk} is in no pack`);
}

const usersOfChunk = (chunk: string): Version[] => VERSIONS.filter((v) => fx.chunks.get(v)!.has(chunk));
const usersOfPack = (p: PackScan): Version[] =>
  VERSIONS.filter((v) => p.entries.some((e) => e.type === 1 && fx.chunks.get(v)!.has(e.id)));
const usersOfObject = (oid: string): Version[] => VERSIONS.filter((v) => fx.objects.get(v)!.has(oid));

function run(ws: string, args: string[]): RunResult {
  const r = mstore(ws, args);
  // a crash is never an answer: no stack trace, no uncaught error
  assert.not.match(r.stderr, /\n\s+at |TypeError|RangeError|Uncaught/, `mstore ${args.join(' ')} crashed: ${r.stderr.slice(0, 2000)}`);
  return r;
}

function verifyJson(ws: string, extra: string[] = []): { code: number; json: VerifyJson; raw: string } {
  const args = ['verify', '--all', ...extra, '--json'];
  const r = run(ws, args);
  let json: VerifyJson;
  try {
    json = JSON.parse(r.stdout) as VerifyJson;
  } catch {
    throw new Error(`mstore ${args.join(' ')} (exit ${r.code}) printed no JSON: ${r.stdout.slice(0, 500)} ${r.stderr.slice(0, 1000)}`);
  }
  return { code: r.code, json, raw: `exit ${r.code}\n${r.stdout}\n${r.stderr}` };
}

function fsckJson(ws: string, extra: string[] = []): { code: number; json: FsckJson; raw: string } {
  const args = ['fsck', ...extra, '--json'];
  const r = run(ws, args);
  let json: FsckJson;
  try {
    json = JSON.parse(r.stdout) as FsckJson;
  } catch {
    throw new Error(`mstore ${args.join(' ')} (exit ${r.code}) printed no JSON: ${r.stdout.slice(0, 500)} ${r.stderr.slice(0, 1000)}`);
  }
  return { code: r.code, json, raw: `exit ${r.code}\n${r.stdout}\n${r.stderr}` };
}

/**
 * `verify --all` found damage in exactly the versions `bad`: exit 1, ok false, every
 * version listed, those in `bad` not ok (each with a problem), the others ok, and the
 * problems name the versions in `bad` and no other.
 */
function expectDamaged(ws: string, bad: Version[], what: string, extra: string[] = []): VerifyJson {
  assert.ok(bad.length > 0, `${what}: the case damages something`);
  const { code, json, raw } = verifyJson(ws, extra);
  assert.is(code, 1, `${what}: exit code\n${raw}`);
  assert.is(json.ok, false, `${what}: ok`);
  assert.ok(json.problems.length > 0, `${what}: problems listed`);
  const reported = new Map(json.versions.map((v) => [v.name, v]));
  for (const v of VERSIONS) {
    const r = reported.get(v);
    assert.ok(r, `${what}: ${v} is listed in versions[]\n${raw}`);
    if (bad.includes(v)) {
      assert.is(r!.ok, false, `${what}: ${v} is damaged\n${raw}`);
      assert.ok(r!.problems.length > 0, `${what}: ${v} has its problems`);
    } else {
      assert.is(r!.ok, true, `${what}: ${v} is ok\n${raw}`);
      assert.equal(r!.problems, [], `${what}: ${v} has no problems`);
    }
  }
  const named = [...new Set(json.problems.flatMap((p) => p.versions))].sort();
  assert.equal(named, [...bad].sort(), `${what}: the versions the problems name\n${raw}`);
  return json;
}

function expectSound(ws: string, what: string, extra: string[] = []): VerifyJson {
  const { code, json, raw } = verifyJson(ws, extra);
  assert.is(code, 0, `${what}: exit code\n${raw}`);
  assert.is(json.ok, true, what);
  assert.equal(json.versions.map((v) => [v.name, v.ok]), VERSIONS.map((v) => [v, true]), what);
  return json;
}

/** Real git agrees that the repository is damaged. */
function expectGitFsckFails(ws: string, oid: string, what: string): void {
  const r = git(path.join(ws, '.mstore', 'git'), ['fsck', '--strict']);
  assert.ok(r.code !== 0, `${what}: git fsck --strict exits non-zero (got ${r.code})`);
  assert.match(r.stdout + r.stderr, oid, `${what}: git fsck names ${oid}`);
}

// ---------------------------------------------------------------------------------------
// 1, 2, 8: chunk data.

/** Tensor 0 of v002 (seed 101): in v002 only. */
const uniqueChunk = (): string => fx.modelChunks.get('v002')![1];
/** Tensor 3 of v001 (seed 4): in v001 and v002, not v003. */
const sharedChunk = (): string => fx.modelChunks.get('v001')![4];

test('fixture: the chunks the cases damage are shared as planned', () => {
  assert.equal(usersOfChunk(uniqueChunk()), ['v002']);
  assert.equal(usersOfChunk(sharedChunk()), ['v001', 'v002']);
  assert.equal(usersOfChunk(fx.modelChunks.get('v001')![0]), ['v001', 'v002', 'v003'], 'the header chunk is shared by all');
  assert.is(fx.packs.length, 3, 'one pack per commit');
});

function damageChunk(ws: string, chunk: string): PackScan {
  const { pack, entry } = packOf(chunk);
  assert.is(entry.length, MiB);
  flipByte(packFile(ws, pack), entry.offset + Math.floor(entry.length / 2));
  return pack;
}

function expectChunkProblem(json: VerifyJson, chunk: string, pack: PackScan, bad: Version[], what: string): void {
  const ps = json.problems.filter((p) => p.chunk === chunk);
  assert.ok(ps.length > 0, `${what}: a problem names chunk ${chunk}\n${JSON.stringify(json.problems, null, 2)}`);
  const files = new Set(ps.flatMap((p) => p.files));
  for (const v of bad) assert.ok(files.has(`${v}:model.safetensors`), `${what}: ${v}:model.safetensors is named`);
  for (const p of ps) {
    assert.is(p.pack, pack.id, `${what}: the pack`);
    assert.match(p.message, 'model.safetensors', `${what}: the message names the file`);
    assert.match(p.message, chunk, `${what}: the message names the chunk`);
  }
  assert.is(json.problems.length, ps.length, `${what}: no other problem\n${JSON.stringify(json.problems, null, 2)}`);
}

test('1. a byte of a chunk only v002 has: verify --all names v002 alone, the file and the chunk', () => {
  const ws = copyStore();
  const chunk = uniqueChunk();
  const pack = damageChunk(ws, chunk);
  const json = expectDamaged(ws, ['v002'], 'unique chunk');
  expectChunkProblem(json, chunk, pack, ['v002'], 'unique chunk');
  // the text report says the same
  const t = run(ws, ['verify', '--all']);
  assert.is(t.code, 1);
  assert.match(t.stdout, /^v001\s+ok$/m);
  assert.match(t.stdout, /^v002\s+DAMAGED$/m);
  assert.match(t.stdout, /^v003\s+ok$/m);
  assert.match(t.stdout, chunk);
  // verify of the other versions alone passes; of v002 alone fails
  assert.is(run(ws, ['verify', 'v001', 'v003']).code, 0);
  assert.is(run(ws, ['verify', 'v002']).code, 1);
  // checkout refuses the damaged version and restores the others
  assert.is(run(ws, ['checkout', 'v002', '--to', path.join(fx.root, `out-${caseNo}-v002`)]).code, 1);
  const out1 = path.join(fx.root, `out-${caseNo}-v001`);
  assert.is(run(ws, ['checkout', 'v001', '--to', out1]).code, 0);
  assert.equal(treeDigest(out1), fx.digests.get('v001'));

  // 8. --quick reads no chunk data, so it cannot see this; --sample 100 re-reads every chunk.
  const quick = verifyJson(ws, ['--quick']);
  assert.is(quick.code, 0, `--quick does not read chunk bytes\n${quick.raw}`);
  assert.is(quick.json.ok, true);
  assert.is(quick.json.mode, 'quick');
  assert.is(quick.json.bytes, 0, '--quick: no bytes read');
  assert.is(quick.json.chunks, 0, '--quick: no chunk re-hashed');
  const sample = expectDamaged(ws, ['v002'], '--sample 100', ['--sample', '100']);
  assert.is(sample.mode, 'sample');
  expectChunkProblem(sample, chunk, pack, ['v002'], '--sample 100');
});

/** Flips a byte in the middle of chunk `id` of the store `ws`. */
function damageAnyChunk(ws: string, id: string): void {
  for (const pack of fx.packs) for (const e of pack.entries) if (e.type === 1 && e.id === id) return flipByte(packFile(ws, pack), e.offset + Math.floor(e.length / 2));
  throw new Error(`chunk ${id} is in no pack`);
}

test('8b. --sample 10 --seed S re-reads a proper subset of the chunks, the same for the same seed, and catches damage inside it', () => {
  const all = [...new Set(fx.packs.flatMap((p) => p.entries.filter((e) => e.type === 1).map((e) => e.id)))];
  assert.ok(all.length >= 10, `${all.length} chunks in the fixture`);
  const sample = ['--sample', '10', '--seed', '3'];
  // Every chunk damaged: each chunk the sample reads is reported, so the problems are the sample.
  const ws = copyStore();
  for (const id of all) damageAnyChunk(ws, id);
  const picked = (): string[] => {
    const { code, json, raw } = verifyJson(ws, sample);
    assert.is(code, 1, `--sample over a store whose every chunk is damaged\n${raw}`);
    const ids = [...new Set(json.problems.map((p) => p.chunk).filter((c): c is string => !!c))].sort();
    assert.is(ids.length, json.chunks, `one problem per chunk read\n${raw}`);
    return ids;
  };
  const s = picked();
  assert.ok(s.length >= 1 && s.length < all.length / 2, `--sample 10 read ${s.length} of ${all.length} chunks`);
  assert.equal(picked(), s, 'the same seed reads the same chunks');
  // One damaged chunk inside the sample: caught, naming it. One outside: not read, so not seen.
  const inside = copyStore();
  damageAnyChunk(inside, s[0]);
  const caught = verifyJson(inside, sample);
  assert.is(caught.code, 1, `damage inside the sample\n${caught.raw}`);
  assert.equal(caught.json.problems.map((p) => p.chunk), [s[0]]);
  const outside = copyStore();
  const other = all.find((id) => !s.includes(id))!;
  damageAnyChunk(outside, other);
  const missed = verifyJson(outside, sample);
  assert.is(missed.code, 0, `damage outside the sample is not read (the sample is a subset)\n${missed.raw}`);
  assert.is(missed.json.chunks, s.length);
  assert.is(verifyJson(outside, ['--sample', '100']).code, 1, '--sample 100 reads it');
});

test('2. a byte of a chunk v001 and v002 share: both named, v003 ok', () => {
  const ws = copyStore();
  const chunk = sharedChunk();
  const pack = damageChunk(ws, chunk);
  const json = expectDamaged(ws, ['v001', 'v002'], 'shared chunk');
  expectChunkProblem(json, chunk, pack, ['v001', 'v002'], 'shared chunk');
});

// ---------------------------------------------------------------------------------------
// 3, 9: a pack's own table, a truncated pack.

/** The pack v002 wrote: v002's new tensors, one of which v003 keeps; v001 has nothing there. */
const v002Pack = (): PackScan => packOf(uniqueChunk()).pack;

test('3. a byte in a pack table: every version with data in that pack is named; fsck names the pack', () => {
  const pack = v002Pack();
  const bad = usersOfPack(pack);
  assert.equal(bad, ['v002', 'v003']);
  const ws = copyStore();
  // the id field of the first record (a chunk id): the table no longer hashes to the pack id
  flipByte(packFile(ws, pack), pack.tableStart + 5 + 10);
  const json = expectDamaged(ws, bad, 'pack table');
  assert.ok(json.problems.every((p) => p.pack === pack.id), `every problem names pack ${pack.id}\n${JSON.stringify(json.problems, null, 2)}`);
  const f = fsckJson(ws);
  assert.is(f.code, 1, f.raw);
  assert.is(f.json.ok, false);
  assert.is(f.json.packs.damaged, 1, f.raw);
  assert.ok(f.json.problems.some((p) => p.includes(pack.id)), `fsck names pack ${pack.id}\n${f.raw}`);
});

test('9. a truncated pack (last 10 bytes cut): verify and fsck exit 1', () => {
  const pack = v002Pack();
  const bad = usersOfPack(pack);
  const ws = copyStore();
  truncateSync(packFile(ws, pack), pack.size - 10);
  const json = expectDamaged(ws, bad, 'truncated pack');
  assert.ok(json.problems.every((p) => p.pack === pack.id), `every problem names pack ${pack.id}`);
  const f = fsckJson(ws);
  assert.is(f.code, 1, f.raw);
  assert.ok(f.json.problems.some((p) => p.includes(pack.id)), `fsck names pack ${pack.id}\n${f.raw}`);
  // --quick needs no chunk bytes but does read the tables: it sees this one
  expectDamaged(ws, bad, 'truncated pack, --quick', ['--quick']);
});

test('9b. a pack cut inside its chunk data (no table, no footer left): verify and fsck exit 1', () => {
  // Cut the whole table and footer and half of the last entry: nothing at the end parses.
  const pack = v002Pack();
  const bad = usersOfPack(pack);
  const ws = copyStore();
  truncateSync(packFile(ws, pack), pack.tableStart - 100);
  expectDamaged(ws, bad, 'pack cut in its data');
  assert.is(fsckJson(ws).code, 1);
});

// ---------------------------------------------------------------------------------------
// 4, 5, 6: git objects.

/** Real git and mstore fsck see the damaged object; then verify --all names exactly `bad`. */
function expectGitDamage(ws: string, oid: string, bad: Version[], what: string): VerifyJson {
  expectGitFsckFails(ws, oid, what);
  const f = fsckJson(ws);
  assert.is(f.code, 1, `${what}: mstore fsck exit code\n${f.raw}`);
  assert.ok(f.json.git.damaged >= 1, `${what}: fsck counts the damaged object\n${f.raw}`);
  assert.ok(f.json.problems.some((p) => p.includes(oid)), `${what}: fsck names ${oid}\n${f.raw}`);
  return expectDamaged(ws, bad, what);
}

test("4. a byte in v001's commit object: verify names v001, v002 and v003 ok; git fsck agrees", () => {
  const gitdir = path.join(fx.pristine, '.mstore', 'git');
  const commit = gitOk(gitdir, ['rev-parse', 'v001^{commit}']).trim();
  assert.equal(usersOfObject(commit), ['v001']);
  const ws = copyStore();
  damageGitObject(ws, commit);
  // The version whose record is damaged must be listed (not ok) under its version name, like
  // every other kind of damage, so that a reader of versions[] or of the text report sees it.
  expectGitDamage(ws, commit, ['v001'], 'v001 commit');
});

test('5. a byte in a tree object: the root tree of v002 names v002; the adapter/ tree v001 and v002 share names both', () => {
  const gitdir = path.join(fx.pristine, '.mstore', 'git');
  const root = gitOk(gitdir, ['rev-parse', 'v002^{tree}']).trim();
  assert.equal(usersOfObject(root), ['v002']);
  let ws = copyStore();
  damageGitObject(ws, root);
  expectGitDamage(ws, root, ['v002'], 'v002 root tree');

  const adapter = gitOk(gitdir, ['rev-parse', 'v001:adapter']).trim();
  assert.equal(usersOfObject(adapter), ['v001', 'v002']);
  ws = copyStore();
  damageGitObject(ws, adapter);
  expectGitDamage(ws, adapter, ['v001', 'v002'], 'shared adapter/ tree');
});

test('6. a byte in the lfs pointer blob of v003:model.safetensors: verify names v003 and the file', () => {
  const gitdir = path.join(fx.pristine, '.mstore', 'git');
  const blob = gitOk(gitdir, ['rev-parse', 'v003:model.safetensors']).trim();
  assert.match(gitOk(gitdir, ['cat-file', 'blob', blob]), /^version https:\/\/git-lfs\.github\.com\/spec\/v1\noid sha256:/);
  assert.equal(usersOfObject(blob), ['v003']);
  const ws = copyStore();
  damageGitObject(ws, blob);
  const json = expectGitDamage(ws, blob, ['v003'], 'v003 pointer');
  assert.ok(
    json.problems.some((p) => p.files.includes('v003:model.safetensors') && p.message.includes(blob)),
    `the problem names v003:model.safetensors and object ${blob}\n${JSON.stringify(json.problems, null, 2)}`,
  );
});

// ---------------------------------------------------------------------------------------
// 7: the lmdb index deleted, and rebuilt.

test('7. index deleted: verify and fsck exit 1; fsck --repair-index restores every version byte for byte', () => {
  const ws = copyStore();
  rmSync(path.join(ws, '.mstore', 'index'), { recursive: true, force: true });
  // every version has lfs content (model.safetensors, the adapter)
  const json = expectDamaged(ws, [...VERSIONS], 'index deleted');
  for (const v of VERSIONS) {
    assert.ok(json.problems.some((p) => p.files.includes(`${v}:model.safetensors`)), `${v}:model.safetensors is named`);
  }
  const f = fsckJson(ws);
  assert.is(f.code, 1, f.raw);
  assert.is(f.json.ok, false);
  assert.ok(f.json.problems.some((p) => p.includes('--repair-index')), `fsck points at --repair-index\n${f.raw}`);
  const ft = run(ws, ['fsck']);
  assert.is(ft.code, 1);
  assert.match(ft.stdout, '--repair-index');

  const rep = fsckJson(ws, ['--repair-index']);
  assert.is(rep.code, 0, rep.raw);
  assert.is(rep.json.ok, true, rep.raw);
  assert.equal(rep.json.repaired, { packsIndexed: fx.packs.length, damagedPacks: [] });
  assert.is(fsckJson(ws).code, 0, 'fsck after the repair');
  expectSound(ws, 'verify after the repair');
  for (const v of VERSIONS) {
    const dest = path.join(fx.root, `out-${caseNo}-${v}`);
    const r = run(ws, ['checkout', v, '--to', dest]);
    assert.is(r.code, 0, `checkout ${v}: ${r.stderr}`);
    assert.equal(treeDigest(dest), fx.digests.get(v), `${v} byte for byte after the repair`);
  }
});

test.run();
