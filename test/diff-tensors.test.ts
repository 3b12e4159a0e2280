/**
 * The tensor diff (issue 4): stores built through the real CLI, compared in-process through
 * `versionSide` / `workspaceSide` and `diffTensors`. What changed is checked against what the
 * test itself computes from the files it wrote: it parses their headers and compares every
 * tensor's bytes (and every 4 MiB window of them) one by one.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { copyFileSync, mkdirSync, openSync, readFileSync, closeSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { cleanup, mstore, mstoreJson, tmpDir, writeSafetensors, type TensorSpec } from './helpers.js';
import { Store } from '../src/repo/store.js';
import { versionSide, workspaceSide, type Side } from '../src/ops/diff/sides.js';
import { diffTensors, type TensorDiff, type TensorChange } from '../src/ops/diff/tensors.js';

const MiB = 1024 * 1024;

// ---------------------------------------------------------------- fixtures

interface RawTensor {
  name: string;
  dtype: string;
  shape: number[];
  data: Buffer;
}

/** A safetensors file with exactly these bytes per tensor. */
function writeRaw(file: string, tensors: RawTensor[]): void {
  const header: Record<string, unknown> = {};
  let off = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.length] };
    off += t.data.length;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(file, Buffer.concat([len, json, ...tensors.map((t) => t.data)]));
}

function f32(n: number, value: number): Buffer {
  const b = Buffer.alloc(n * 4);
  for (let i = 0; i < n; i++) b.writeFloatLE(value, i * 4);
  return b;
}

function u16(n: number, bits: number): Buffer {
  const b = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) b.writeUInt16LE(bits, i * 2);
  return b;
}

/** Overwrites bytes of a file in place. */
function patch(file: string, offset: number, bytes: Buffer): void {
  const fd = openSync(file, 'r+');
  try {
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}

interface Parsed {
  dataStart: number;
  tensors: Map<string, { dtype: string; shape: number[]; begin: number; end: number }>;
}

/** The test's own reading of a safetensors file (independent of src/). */
function parse(file: string): Parsed {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const h = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const tensors = new Map<string, { dtype: string; shape: number[]; begin: number; end: number }>();
  for (const [k, v] of Object.entries(h)) {
    if (k !== '__metadata__') tensors.set(k, { dtype: v.dtype, shape: v.shape, begin: v.data_offsets[0], end: v.data_offsets[1] });
  }
  return { dataStart: 8 + n, tensors };
}

interface Expected {
  status: TensorChange['status'];
  changedBytes: number;
}

/**
 * What the diff must say, from the files: tensor name -> status and changed bytes of B (per
 * 4 MiB window from the tensor start for same dtype and shape). `filesA`/`filesB` are the
 * files (shards) of each side.
 */
function expected(filesA: string[], filesB: string[]): Map<string, Expected> {
  const load = (files: string[]) => {
    const m = new Map<string, { file: Buffer; dtype: string; shape: number[]; start: number; end: number }>();
    for (const f of files) {
      const p = parse(f);
      const file = readFileSync(f);
      for (const [k, t] of p.tensors) m.set(k, { file, dtype: t.dtype, shape: t.shape, start: p.dataStart + t.begin, end: p.dataStart + t.end });
    }
    return m;
  };
  const a = load(filesA);
  const b = load(filesB);
  const out = new Map<string, Expected>();
  for (const name of new Set([...a.keys(), ...b.keys()])) {
    const ta = a.get(name);
    const tb = b.get(name);
    if (!ta) out.set(name, { status: 'added', changedBytes: tb!.end - tb!.start });
    else if (!tb) out.set(name, { status: 'removed', changedBytes: 0 });
    else if (ta.dtype !== tb.dtype || JSON.stringify(ta.shape) !== JSON.stringify(tb.shape)) out.set(name, { status: 'changed', changedBytes: tb.end - tb.start });
    else {
      let changed = 0;
      for (let o = 0; o < tb.end - tb.start; o += 4 * MiB) {
        const e = Math.min(o + 4 * MiB, tb.end - tb.start);
        if (!ta.file.subarray(ta.start + o, ta.start + e).equals(tb.file.subarray(tb.start + o, tb.start + e))) changed += e - o;
      }
      out.set(name, { status: changed ? 'changed' : 'unchanged', changedBytes: changed });
    }
  }
  return out;
}

function assertMatches(d: TensorDiff, want: Map<string, Expected>): void {
  assert.equal(
    d.tensors.map((t) => t.name),
    [...want.keys()].sort(),
    `${d.path}: tensor names`,
  );
  for (const t of d.tensors) {
    const w = want.get(t.name)!;
    assert.is(t.status, w.status, `${d.path}: ${t.name} status`);
    assert.is(t.changedBytes, w.changedBytes, `${d.path}: ${t.name} changedBytes`);
  }
  const counts = { added: 0, removed: 0, changed: 0, unchanged: 0 };
  for (const w of want.values()) counts[w.status]++;
  assert.equal(d.counts, counts, `${d.path}: counts`);
  assert.is(d.bytesChanged, [...want.values()].reduce((s, w) => s + w.changedBytes, 0), `${d.path}: bytesChanged`);
}

/** Opens the store at `ws`, compares two sides (a revision or 'workspace'), closes everything. */
async function diff(ws: string, revA: string, revB: string, opts?: { paths?: string[]; stats?: boolean }): Promise<TensorDiff[]> {
  const store = await Store.find(ws);
  const sides: Side[] = [];
  try {
    const side = async (rev: string): Promise<Side> => {
      const s = rev === 'workspace' ? await workspaceSide(store) : await versionSide(store, rev);
      sides.push(s);
      return s;
    };
    return await diffTensors(await side(revA), await side(revB), opts);
  } finally {
    for (const s of sides) await s.close();
    await store.close();
  }
}

/** A side that counts the bytes read through it. */
function counting(side: Side): { side: Side; bytes: () => number } {
  let n = 0;
  const wrapped: Side = {
    ...side,
    files: () => side.files(),
    chunks: (f) => side.chunks(f),
    close: () => side.close(),
    read: async (f, start, len) => {
      const b = await side.read(f, start, len);
      n += b.length;
      return b;
    },
    readAll: async (f) => {
      const b = await side.readAll(f);
      n += b.length;
      return b;
    },
  };
  return { side: wrapped, bytes: () => n };
}

const byPath = (ds: TensorDiff[], p: string): TensorDiff => {
  const d = ds.find((x) => x.path === p);
  assert.ok(d, `a diff for ${p} (have ${ds.map((x) => x.path).join(', ')})`);
  return d!;
};
const tensor = (d: TensorDiff, name: string): TensorChange => d.tensors.find((t) => t.name === name)!;

// ---------------------------------------------------------------- tests

test('single file: changed, unchanged, added, removed, dtype and shape changes, one piece of a big tensor', async () => {
  const ws = tmpDir();
  const keep = tmpDir();
  try {
    assert.is(mstore(ws, ['init']).code, 0);
    const file = path.join(ws, 'model.safetensors');
    const v1: TensorSpec[] = [
      { name: 'a.keep', dtype: 'BF16', shape: [256, 4096], seed: 1 }, // 2 MiB
      { name: 'b.big', dtype: 'BF16', shape: [5120, 4096], seed: 2 }, // 40 MiB: 10 pieces
      { name: 'c.removed', dtype: 'F32', shape: [64, 64], seed: 3 },
      { name: 'd.dtype', dtype: 'F32', shape: [128, 128], seed: 4 },
      { name: 'e.shape', dtype: 'BF16', shape: [256, 512], seed: 5 },
      { name: 'f.changed', dtype: 'BF16', shape: [1024, 1024], seed: 6 },
      { name: 'g.keep', dtype: 'U8', shape: [3 * MiB + 5], seed: 7 }, // odd size: last piece short
    ];
    writeSafetensors(file, v1);
    writeFileSync(path.join(ws, 'config.json'), '{}');
    mstoreJson(ws, ['commit', '-m', 'v1']);
    copyFileSync(file, path.join(keep, 'v1.safetensors'));

    // v2: c removed (later tensors move), d F32 -> F16, e reshaped (same bytes), f new bytes,
    // h added, one byte of b's third piece changed.
    const v2: TensorSpec[] = [
      { name: 'a.keep', dtype: 'BF16', shape: [256, 4096], seed: 1 },
      { name: 'b.big', dtype: 'BF16', shape: [5120, 4096], seed: 2 },
      { name: 'd.dtype', dtype: 'F16', shape: [128, 128], seed: 4 },
      { name: 'e.shape', dtype: 'BF16', shape: [512, 256], seed: 5 },
      { name: 'f.changed', dtype: 'BF16', shape: [1024, 1024], seed: 60 },
      { name: 'g.keep', dtype: 'U8', shape: [3 * MiB + 5], seed: 7 },
      { name: 'h.added', dtype: 'F32', shape: [32, 32], seed: 8 },
    ];
    writeSafetensors(file, v2);
    const p = parse(file);
    patch(file, p.dataStart + p.tensors.get('b.big')!.begin + 9 * MiB + 123, Buffer.from([0xab ^ readFileSync(file)[p.dataStart + p.tensors.get('b.big')!.begin + 9 * MiB + 123]]));
    mstoreJson(ws, ['commit', '-m', 'v2']);

    const [d, ...rest] = await diff(ws, 'v001', 'v002');
    assert.is(rest.length, 0, 'one safetensors file, one diff');
    assert.is(d.kind, 'file');
    assert.is(d.path, 'model.safetensors');
    const want = expected([path.join(keep, 'v1.safetensors')], [file]);
    assertMatches(d, want);
    // The spelled-out expectations, so the oracle itself is checked.
    assert.equal(
      d.tensors.map((t) => `${t.name}:${t.status}`),
      ['a.keep:unchanged', 'b.big:changed', 'c.removed:removed', 'd.dtype:changed', 'e.shape:changed', 'f.changed:changed', 'g.keep:unchanged', 'h.added:added'],
    );
    assert.is(tensor(d, 'b.big').changedBytes, 4 * MiB, 'one 4 MiB piece of 40 MiB');
    assert.equal(
      Object.keys(tensor(d, 'b.big')),
      ['name', 'status', 'fileA', 'fileB', 'dtypeA', 'dtypeB', 'shapeA', 'shapeB', 'bytesA', 'bytesB', 'changedBytes'],
      'JSON field order (docs/diff.md)',
    );
    assert.equal(Object.keys(d), ['kind', 'path', 'counts', 'bytesChanged', 'bytesTotalB', 'tensors']);
    assert.is(tensor(d, 'f.changed').changedBytes, 2 * MiB);
    assert.is(tensor(d, 'e.shape').changedBytes, 256 * 512 * 2);
    assert.equal(tensor(d, 'e.shape').shapeA, [256, 512]);
    assert.equal(tensor(d, 'e.shape').shapeB, [512, 256]);
    assert.is(tensor(d, 'd.dtype').dtypeA, 'F32');
    assert.is(tensor(d, 'd.dtype').dtypeB, 'F16');
    assert.is(tensor(d, 'd.dtype').bytesA, 128 * 128 * 4);
    assert.is(tensor(d, 'd.dtype').bytesB, 128 * 128 * 2);
    assert.is(tensor(d, 'c.removed').fileA, 'model.safetensors');
    assert.is(tensor(d, 'c.removed').fileB, undefined);
    assert.is(tensor(d, 'h.added').changedBytes, 32 * 32 * 4);
    assert.is(tensor(d, 'a.keep').relNorm, undefined, 'no stats unless asked');
    const totalB = [...parse(file).tensors.values()].reduce((s, t) => s + t.end - t.begin, 0);
    assert.is(d.bytesTotalB, totalB);

    // Decided from chunk lists: only the two headers are read.
    {
      const store = await Store.find(ws);
      const a = counting(await versionSide(store, 'v001'));
      const b = counting(await versionSide(store, 'v002'));
      const again = await diffTensors(a.side, b.side);
      assert.equal(again, [d]);
      const headers = (f: string): number => parse(f).dataStart;
      assert.is(a.bytes(), headers(path.join(keep, 'v1.safetensors')), 'A: header bytes only');
      assert.is(b.bytes(), headers(file), 'B: header bytes only');
      await a.side.close();
      await b.side.close();
      await store.close();
    }
    // Reverse direction: added and removed swap.
    const [r] = await diff(ws, 'v002', 'v001');
    assertMatches(r, expected([file], [path.join(keep, 'v1.safetensors')]));
    // Same version on both sides: all unchanged.
    const [same] = await diff(ws, 'v002', 'v002');
    assert.is(same.counts.unchanged, 7);
    assert.is(same.bytesChanged, 0);
    // Path filters.
    assert.is((await diff(ws, 'v001', 'v002', { paths: ['config.json'] })).length, 0);
    assert.is((await diff(ws, 'v001', 'v002', { paths: ['./model.safetensors'] })).length, 1);
    assert.is((await diff(ws, 'v001', 'v002', { paths: ['.'] })).length, 1);
  } finally {
    cleanup(ws);
    cleanup(keep);
  }
});

test('sharded checkpoint: tensors matched by name across shards; a moved tensor with the same bytes is unchanged', async () => {
  const ws = tmpDir();
  const keep = tmpDir();
  try {
    assert.is(mstore(ws, ['init']).code, 0);
    const dir = path.join(ws, 'ckpt');
    mkdirSync(dir);
    const s1 = path.join(dir, 'model-00001-of-00002.safetensors');
    const s2 = path.join(dir, 'model-00002-of-00002.safetensors');
    const index = (map: Record<string, string>): void =>
      writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: map }, null, 2));
    const T = (name: string, seed: number, rows = 512): TensorSpec => ({ name, dtype: 'BF16', shape: [rows, 4096], seed });
    // v1: shard 1 = a, b; shard 2 = c, d (4 MiB each; one shard of b is 9 MiB: 3 pieces)
    writeSafetensors(s1, [T('a', 1), T('b', 2, 1152)]);
    writeSafetensors(s2, [T('c', 3), T('d', 4)]);
    index({ a: 'model-00001-of-00002.safetensors', b: 'model-00001-of-00002.safetensors', c: 'model-00002-of-00002.safetensors', d: 'model-00002-of-00002.safetensors' });
    // A plain file beside it, unchanged.
    writeSafetensors(path.join(ws, 'other.safetensors'), [T('x', 9)]);
    mstoreJson(ws, ['commit', '-m', 'v1']);
    copyFileSync(s1, path.join(keep, 's1'));
    copyFileSync(s2, path.join(keep, 's2'));

    // v2: c moved to shard 1 (same bytes), b changed in its middle piece, e added in shard 2.
    writeSafetensors(s1, [T('a', 1), T('c', 3)]);
    writeSafetensors(s2, [T('b', 2, 1152), T('d', 4), T('e', 5, 8)]);
    {
      const p = parse(s2);
      patch(s2, p.dataStart + p.tensors.get('b')!.begin + 5 * MiB, Buffer.from('changed'));
    }
    index({ a: 'model-00001-of-00002.safetensors', c: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors', d: 'model-00002-of-00002.safetensors', e: 'model-00002-of-00002.safetensors' });
    mstoreJson(ws, ['commit', '-m', 'v2']);

    const ds = await diff(ws, 'v001', 'v002');
    assert.equal(ds.map((d) => `${d.kind}:${d.path}`), ['sharded:ckpt/model.safetensors.index.json', 'file:other.safetensors'], 'shards are not diffed alone');
    const sh = byPath(ds, 'ckpt/model.safetensors.index.json');
    assertMatches(sh, expected([path.join(keep, 's1'), path.join(keep, 's2')], [s1, s2]));
    assert.equal(sh.tensors.map((t) => `${t.name}:${t.status}`), ['a:unchanged', 'b:changed', 'c:unchanged', 'd:unchanged', 'e:added']);
    const c = tensor(sh, 'c');
    assert.is(c.fileA, 'ckpt/model-00002-of-00002.safetensors');
    assert.is(c.fileB, 'ckpt/model-00001-of-00002.safetensors');
    assert.is(tensor(sh, 'b').changedBytes, 4 * MiB);
    assert.is(byPath(ds, 'other.safetensors').counts.unchanged, 1);

    // A shard path or the index path selects the checkpoint; the plain file alone.
    assert.equal((await diff(ws, 'v001', 'v002', { paths: ['ckpt/model-00002-of-00002.safetensors'] })).map((d) => d.path), ['ckpt/model.safetensors.index.json']);
    assert.equal((await diff(ws, 'v001', 'v002', { paths: ['ckpt/'] })).map((d) => d.path), ['ckpt/model.safetensors.index.json']);
    assert.equal((await diff(ws, 'v001', 'v002', { paths: ['other.safetensors'] })).map((d) => d.path), ['other.safetensors']);

    // v3: the index is gone, the shards stay: still compared as the checkpoint A's index names.
    rmSync(path.join(dir, 'model.safetensors.index.json'));
    mstoreJson(ws, ['commit', '-m', 'v3']);
    const gone = await diff(ws, 'v002', 'v003');
    assert.equal(gone.map((d) => d.path), ['ckpt/model.safetensors.index.json', 'other.safetensors']);
    assert.equal(gone[0].counts, { added: 0, removed: 0, changed: 0, unchanged: 5 });
  } finally {
    cleanup(ws);
    cleanup(keep);
  }
});

test('version against the workspace: uncommitted changes, untouched files, invalid files left out', async () => {
  const ws = tmpDir();
  const keep = tmpDir();
  try {
    assert.is(mstore(ws, ['init']).code, 0);
    const file = path.join(ws, 'model.safetensors');
    const specs: TensorSpec[] = Array.from({ length: 6 }, (_, i) => ({ name: `layer.${i}`, dtype: 'BF16', shape: [1536, 2048], seed: 10 + i })); // 6 MiB each
    writeSafetensors(file, specs);
    writeSafetensors(path.join(ws, 'same.safetensors'), [{ name: 'w', dtype: 'F32', shape: [512, 1024], seed: 99 }]);
    writeFileSync(path.join(ws, 'bad.safetensors'), Buffer.concat([Buffer.from([16, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{"not": "valid"}'), Buffer.alloc(64)]));
    mstoreJson(ws, ['commit', '-m', 'v1']);
    copyFileSync(file, path.join(keep, 'v1'));

    // Nothing changed yet.
    for (const d of await diff(ws, 'v001', 'workspace')) {
      assert.is(d.bytesChanged, 0, d.path);
      assert.is(d.counts.changed + d.counts.added + d.counts.removed, 0, d.path);
    }
    // Uncommitted: layer.2 gets new bytes, layer.4 one changed byte (its second 4 MiB piece is short).
    specs[2] = { ...specs[2], seed: 200 };
    writeSafetensors(file, specs);
    const p = parse(file);
    patch(file, p.dataStart + p.tensors.get('layer.4')!.begin + 4 * MiB + 7, Buffer.from([1, 2, 3]));
    writeFileSync(path.join(ws, 'new.safetensors'), readFileSync(path.join(ws, 'same.safetensors')));

    const ds = await diff(ws, 'v001', 'workspace');
    assert.equal(ds.map((d) => d.path), ['model.safetensors', 'new.safetensors', 'same.safetensors'], 'bad.safetensors has no tensor diff');
    const m = byPath(ds, 'model.safetensors');
    assertMatches(m, expected([path.join(keep, 'v1')], [file]));
    assert.equal(m.tensors.filter((t) => t.status === 'changed').map((t) => t.name), ['layer.2', 'layer.4']);
    assert.is(tensor(m, 'layer.4').changedBytes, 2 * MiB);
    assert.equal(byPath(ds, 'new.safetensors').counts, { added: 1, removed: 0, changed: 0, unchanged: 0 });
    assert.is(byPath(ds, 'same.safetensors').counts.unchanged, 1);
    // And the other way round.
    const back = byPath(await diff(ws, 'workspace', 'v001'), 'model.safetensors');
    assertMatches(back, expected([file], [path.join(keep, 'v1')]));
  } finally {
    cleanup(ws);
    cleanup(keep);
  }
});

test('stats: relNorm and maxAbsDiff of known perturbations (F32, BF16, F16, dtype change)', async () => {
  const ws = tmpDir();
  try {
    assert.is(mstore(ws, ['init']).code, 0);
    const file = path.join(ws, 'stats.safetensors');
    const n = 1024 * 1024; // 4 MiB of F32: a chunked file
    const nh = 512 * 1024;
    const a32 = f32(n, 1.0);
    const abf = u16(nh, 0x3f80); // BF16 1.0
    const af16 = u16(nh, 0x3c00); // F16 1.0
    const conv = f32(4096, 0.5);
    const zero = f32(1024, 0);
    writeRaw(file, [
      { name: 'w32', dtype: 'F32', shape: [1024, 1024], data: a32 },
      { name: 'wbf', dtype: 'BF16', shape: [512, 1024], data: abf },
      { name: 'wf16', dtype: 'F16', shape: [512, 1024], data: af16 },
      { name: 'conv', dtype: 'F32', shape: [4096], data: conv },
      { name: 'zero', dtype: 'F32', shape: [1024], data: zero },
      { name: 'same', dtype: 'F32', shape: [1024], data: f32(1024, 2) },
    ]);
    mstoreJson(ws, ['commit', '-m', 'v1']);

    const b32 = Buffer.from(a32);
    b32.writeFloatLE(4.0, 12345 * 4); // +3
    const bbf = Buffer.from(abf);
    bbf.writeUInt16LE(0x4000, 777 * 2); // 2.0: +1
    const bf16 = Buffer.from(af16);
    bf16.writeUInt16LE(0x3800, 3 * 2); // 0.5: -0.5
    bf16.writeUInt16LE(0x3e00, 9 * 2); // 1.5: +0.5
    const zb = Buffer.from(zero);
    zb.writeFloatLE(1, 0);
    writeRaw(file, [
      { name: 'w32', dtype: 'F32', shape: [1024, 1024], data: b32 },
      { name: 'wbf', dtype: 'BF16', shape: [512, 1024], data: bbf },
      { name: 'wf16', dtype: 'F16', shape: [512, 1024], data: bf16 },
      { name: 'conv', dtype: 'BF16', shape: [4096], data: u16(4096, 0x3f00) }, // 0.5 in BF16: same values
      { name: 'zero', dtype: 'F32', shape: [1024], data: zb },
      { name: 'same', dtype: 'F32', shape: [1024], data: f32(1024, 2) },
    ]);
    mstoreJson(ws, ['commit', '-m', 'v2']);

    for (const rev of ['v002', 'workspace']) {
      const [d] = await diff(ws, 'v001', rev, { stats: true });
      const close = (x: number | undefined, y: number, what: string): void => assert.ok(x !== undefined && Math.abs(x - y) <= 1e-12 * Math.max(1, Math.abs(y)), `${rev} ${what}: ${x} vs ${y}`);
      close(tensor(d, 'w32').relNorm, 3 / Math.sqrt(n), 'w32 relNorm');
      close(tensor(d, 'w32').maxAbsDiff, 3, 'w32 maxAbsDiff');
      assert.is(tensor(d, 'w32').changedBytes, 4 * MiB);
      close(tensor(d, 'wbf').relNorm, 1 / Math.sqrt(nh), 'wbf relNorm');
      close(tensor(d, 'wbf').maxAbsDiff, 1, 'wbf maxAbsDiff');
      close(tensor(d, 'wf16').relNorm, Math.sqrt(0.5) / Math.sqrt(nh), 'wf16 relNorm');
      close(tensor(d, 'wf16').maxAbsDiff, 0.5, 'wf16 maxAbsDiff');
      const c = tensor(d, 'conv');
      assert.is(c.status, 'changed', 'a dtype change is a change');
      assert.is(c.relNorm, 0, 'F32 0.5 -> BF16 0.5: same values');
      assert.is(c.maxAbsDiff, 0);
      const z = tensor(d, 'zero');
      assert.is(z.status, 'changed');
      assert.is(z.relNorm, undefined, '||A|| = 0: no ratio');
      assert.is(z.maxAbsDiff, 1);
      assert.is(tensor(d, 'same').status, 'unchanged');
      assert.is(tensor(d, 'same').relNorm, undefined, 'no stats for unchanged tensors');
    }
  } finally {
    cleanup(ws);
  }
});

test('a small file stored as one chunk goes through the byte comparison', async () => {
  const ws = tmpDir();
  const keep = tmpDir();
  try {
    assert.is(mstore(ws, ['init']).code, 0);
    const file = path.join(ws, 'adapter_model.safetensors');
    const specs: TensorSpec[] = Array.from({ length: 8 }, (_, i) => ({ name: `lora.${i}`, dtype: 'F32', shape: [64, 256], seed: 300 + i })); // 512 KiB
    writeSafetensors(file, specs);
    mstoreJson(ws, ['commit', '-m', 'v1']);
    copyFileSync(file, path.join(keep, 'v1'));
    specs[3] = { ...specs[3], seed: 999 };
    specs[6] = { ...specs[6], shape: [128, 128] };
    specs.splice(1, 1);
    writeSafetensors(file, specs);
    // lora.5 keeps its seed but one element changes.
    const p = parse(file);
    patch(file, p.dataStart + p.tensors.get('lora.5')!.begin + 4000, Buffer.from([0x7f]));
    mstoreJson(ws, ['commit', '-m', 'v2']);

    {
      // Precondition: both versions hold the file as one chunk, so no tensor is a run of chunks.
      const store = await Store.find(ws);
      for (const rev of ['v001', 'v002']) {
        const s = await versionSide(store, rev);
        assert.is((await s.chunks('adapter_model.safetensors'))!.length, 1);
        await s.close();
      }
      await store.close();
    }
    for (const rev of ['v002', 'workspace']) {
      const [d] = await diff(ws, 'v001', rev, { stats: true });
      assertMatches(d, expected([path.join(keep, 'v1')], [file]));
      assert.equal(d.tensors.filter((t) => t.status !== 'unchanged').map((t) => `${t.name}:${t.status}`), ['lora.1:removed', 'lora.3:changed', 'lora.5:changed', 'lora.6:changed']);
      assert.ok((tensor(d, 'lora.3').relNorm ?? 0) > 0.1, 'new random values');
      assert.ok((tensor(d, 'lora.5').maxAbsDiff ?? 0) > 0, 'one element differs');
      assert.is(tensor(d, 'lora.6').relNorm, undefined, 'shape change: no stats');
    }
  } finally {
    cleanup(ws);
    cleanup(keep);
  }
});

test.run();
