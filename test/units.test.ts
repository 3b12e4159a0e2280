/** Library-level tests: safetensors rules, chunkers, packs, pointers, index rebuild from packs. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytes, createHash } from 'node:crypto';
import { rmSync, writeFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseSafetensorsHeader, chunkCuts } from '../src/format/safetensors.js';
import { FastCdcChunker, PlannedChunker, type Chunker } from '../src/format/chunker.js';
import { parsePointer, renderPointer } from '../src/format/pointer.js';
import { PackWriter, readPackTable, ENTRY_CHUNK, packPath } from '../src/repo/pack.js';
import { Store } from '../src/repo/store.js';
import { indexPacks } from '../src/repo/reindex.js';
import { commit } from '../src/ops/commit.js';
import { checkout } from '../src/ops/checkout.js';
import { COMMANDS } from '../src/cli/commands/index.js';
import { encodeObjects, decodeObjects } from '../src/remote/wire.js';
import type { WireObject } from '../src/remote/remote.js';
import { cleanup, tmpDir, writeModelDir, treeDigest } from './helpers.js';

function st(header: object, dataBytes: number, pad = true): { prefix: Buffer; json: Buffer; size: number } {
  let j = JSON.stringify(header);
  if (pad) j += ' '.repeat((8 - (j.length % 8)) % 8);
  const json = Buffer.from(j);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  return { prefix, json, size: 8 + json.length + dataBytes };
}

const parse = (h: object, data: number) => {
  const s = st(h, data);
  return parseSafetensorsHeader(s.prefix, s.json, s.size);
};

test('safetensors: a valid header parses, tensors sorted by offset, metadata kept', () => {
  const h = parse(
    {
      __metadata__: { format: 'pt' },
      b: { dtype: 'F32', shape: [2, 2], data_offsets: [4, 20] },
      a: { dtype: 'BF16', shape: [2], data_offsets: [0, 4] },
    },
    20,
  );
  assert.equal(h.tensors.map((t) => t.name), ['a', 'b']);
  assert.equal(h.metadata, { format: 'pt' });
  assert.is(h.dataStart, 8 + h.headerBytes);
});

test('safetensors: the official parser rules reject bad files', () => {
  const bad: [string, () => unknown][] = [
    ['gap', () => parse({ a: { dtype: 'U8', shape: [2], data_offsets: [0, 2] }, b: { dtype: 'U8', shape: [2], data_offsets: [3, 5] } }, 5)],
    ['overlap', () => parse({ a: { dtype: 'U8', shape: [2], data_offsets: [0, 2] }, b: { dtype: 'U8', shape: [2], data_offsets: [1, 3] } }, 3)],
    ['not from 0', () => parse({ a: { dtype: 'U8', shape: [2], data_offsets: [1, 3] } }, 3)],
    ['size vs shape', () => parse({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, 4)],
    ['trailing bytes', () => parse({ a: { dtype: 'U8', shape: [2], data_offsets: [0, 2] } }, 3)],
    ['unknown dtype', () => parse({ a: { dtype: 'Q8', shape: [2], data_offsets: [0, 2] } }, 2)],
    ['negative shape', () => parse({ a: { dtype: 'U8', shape: [-2], data_offsets: [0, 2] } }, 2)],
    ['metadata not strings', () => parse({ __metadata__: { n: 1 } }, 0)],
    ['header past end', () => {
      const s = st({}, 0);
      return parseSafetensorsHeader(s.prefix, s.json, s.size - 1);
    }],
    ['header too large', () => {
      const p = Buffer.alloc(8);
      p.writeBigUInt64LE(100_000_001n);
      return parseSafetensorsHeader(p, Buffer.alloc(0), 200_000_000);
    }],
    ['not JSON', () => {
      const json = Buffer.from('{"a":   ');
      const p = Buffer.alloc(8);
      p.writeBigUInt64LE(BigInt(json.length));
      return parseSafetensorsHeader(p, json, 8 + json.length);
    }],
    ['invalid UTF-8', () => {
      const json = Buffer.from([0x7b, 0xff, 0xfe, 0x7d, 0x20, 0x20, 0x20, 0x20]);
      const p = Buffer.alloc(8);
      p.writeBigUInt64LE(BigInt(json.length));
      return parseSafetensorsHeader(p, json, 8 + json.length);
    }],
  ];
  for (const [what, fn] of bad) assert.throws(fn, undefined, what);
});

test('safetensors: cuts at the header end, every tensor, and fixed pieces from each tensor start', () => {
  const h = parse({ a: { dtype: 'U8', shape: [10], data_offsets: [0, 10] }, b: { dtype: 'U8', shape: [25], data_offsets: [10, 35] } }, 35);
  const d = h.dataStart;
  const headerPieces = Array.from({ length: Math.ceil(d / 8) - 1 }, (_, i) => 8 * (i + 1));
  const cuts = chunkCuts(h, d + 35, 8);
  assert.equal(cuts, [...headerPieces, d, d + 8, d + 10, d + 18, d + 26, d + 34, d + 35]);
  assert.ok(cuts.includes(d) && cuts.includes(d + 10) && cuts.includes(d + 35), 'tensor boundaries are cuts');
  assert.ok(cuts.includes(d + 18) && !cuts.includes(d + 16), 'pieces align to the tensor start, not the file');
});

function chunkAll(c: Chunker, data: Buffer, step: number): number[] {
  // Feed the data in `step`-sized windows, as the ingest pipeline does with its slots.
  const lens: number[] = [];
  let off = 0;
  let have = Math.min(step, data.length);
  for (;;) {
    const eof = have >= data.length;
    const n = c.next(data, off, have, eof);
    if (n === 0) {
      if (eof) break;
      have = Math.min(data.length, have + step);
      continue;
    }
    lens.push(n);
    off += n;
    if (off >= data.length) break;
  }
  return lens;
}

test('FastCDC: deterministic across buffer sizes, bounded, and resilient to an insertion', () => {
  const p = { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 };
  const data = randomBytes(8 * 1024 * 1024);
  const a = chunkAll(new FastCdcChunker(p), data, 1024 * 1024);
  const b = chunkAll(new FastCdcChunker(p), data, 300 * 1024 + 7);
  assert.equal(a, b, 'cut points do not depend on how the data is fed');
  assert.is(a.reduce((x, y) => x + y, 0), data.length);
  assert.ok(a.slice(0, -1).every((n) => n >= p.min && n <= p.max));
  const avg = data.length / a.length;
  assert.ok(avg > p.avg / 2 && avg < p.avg * 2, `average ${avg}`);
  const ids = (d: Buffer, lens: number[]) => {
    const out = new Set<string>();
    let o = 0;
    for (const n of lens) {
      out.add(createHash('sha256').update(d.subarray(o, o + n)).digest('hex'));
      o += n;
    }
    return out;
  };
  const shifted = Buffer.concat([randomBytes(100), data]);
  const before = ids(data, a);
  const after = ids(shifted, chunkAll(new FastCdcChunker(p), shifted, 1024 * 1024));
  const shared = [...after].filter((x) => before.has(x)).length;
  assert.ok(shared >= before.size - 3, `only ${shared} of ${before.size} chunks survive a 100-byte insertion`);
});

test('PlannedChunker cuts exactly at the plan', () => {
  const c = new PlannedChunker([3, 10, 12]);
  assert.equal(chunkAll(c, Buffer.alloc(12), 5), [3, 7, 2]);
});

test('git-lfs pointers: render and parse round-trip; anything else is not a pointer', () => {
  const oid = 'a'.repeat(64);
  const text = renderPointer({ oid, size: 12345 });
  assert.is(text, `version https://git-lfs.github.com/spec/v1\noid sha256:${oid}\nsize 12345\n`);
  assert.equal(parsePointer(Buffer.from(text)), { oid, size: 12345 });
  assert.is(parsePointer(Buffer.from(text.replace('size 12345', 'size 012'))), undefined);
  assert.is(parsePointer(Buffer.from('{"json": true}')), undefined);
});

test('packs: table verified against the name; a flipped table byte is detected', async () => {
  const dir = tmpDir();
  try {
    const w = new PackWriter(dir, path.join(dir, 'packs'), 1 << 20);
    const chunks = Array.from({ length: 5 }, () => randomBytes(300 * 1024));
    await Promise.all(chunks.map((c) => w.add(ENTRY_CHUNK, createHash('sha256').update(c).digest(), c)));
    const packs = await w.finish();
    assert.ok(packs.length >= 2, 'rotates at the target size');
    const entries = await readPackTable(path.join(dir, 'packs'), packs[0].id);
    assert.is(entries.length, packs[0].entries.length);
    const file = packPath(path.join(dir, 'packs'), packs[0].id);
    const bytes = readFileSync(file);
    bytes[bytes.length - 50] ^= 1;
    writeFileSync(file, bytes);
    try {
      await readPackTable(path.join(dir, 'packs'), packs[0].id);
      assert.unreachable('damaged table accepted');
    } catch (e) {
      assert.match((e as Error).message, /hash/);
    }
  } finally {
    cleanup(dir);
  }
});

test('the index is derived data: delete it, rebuild from packs, check out byte for byte', async () => {
  const ws = tmpDir();
  const out = tmpDir();
  try {
    let store = await Store.init(ws);
    writeModelDir(ws);
    const r = await commit(store, { cwd: ws, message: 'one' });
    assert.is(r.version, 'v001');
    const want = treeDigest(ws);
    await store.close();
    rmSync(path.join(ws, '.mstore', 'index'), { recursive: true });
    store = await Store.find(ws);
    try {
      await checkout(store, { rev: 'v001', cwd: ws, to: path.join(out, 'a') });
      assert.unreachable('checkout without an index');
    } catch (e) {
      assert.match((e as Error).message, /not in the store|missing/);
    }
    const res = await indexPacks(store);
    assert.ok(res.indexed.length > 0);
    assert.is(res.damaged.length, 0);
    await checkout(store, { rev: 'v001', cwd: ws, to: path.join(out, 'b') });
    assert.equal(treeDigest(path.join(out, 'b')), want);
    await store.close();
  } finally {
    cleanup(ws);
    cleanup(out);
  }
});

test('the command table matches every command module (the help listing cannot drift)', async () => {
  for (const e of COMMANDS) {
    const m = (await e.load()) as { command: string; describe: string };
    assert.is(m.command, e.command);
    assert.is(m.describe, e.describe);
  }
});

test('wire stream: round trip; a flipped byte, a truncated stream and trailing bytes are refused', async () => {
  const chunk = randomBytes(100_000);
  const git = Buffer.concat([Buffer.from('blob 5\0'), Buffer.from('hello')]);
  const objs: WireObject[] = [
    { kind: 'chunk', id: createHash('sha256').update(chunk).digest('hex'), data: chunk },
    { kind: 'git', id: createHash('sha1').update(git).digest('hex'), data: git },
  ];
  async function* src(): AsyncGenerator<WireObject> {
    yield* objs;
  }
  const parts: Buffer[] = [];
  for await (const b of encodeObjects(src())) parts.push(b);
  const bytes = Buffer.concat(parts);
  // Fed in odd-sized pieces, as a socket would.
  async function* pieces(b: Buffer): AsyncGenerator<Buffer> {
    for (let o = 0; o < b.length; o += 777) yield b.subarray(o, o + 777);
  }
  const back: WireObject[] = [];
  for await (const o of decodeObjects(pieces(bytes))) back.push(o);
  assert.equal(back.map((o) => [o.kind, o.id, o.data.length]), objs.map((o) => [o.kind, o.id, o.data.length]));
  const refused = async (b: Buffer): Promise<string> => {
    try {
      for await (const _ of decodeObjects(pieces(b))) void _;
    } catch (e) {
      return (e as Error).message;
    }
    return 'accepted';
  };
  const flipped = Buffer.from(bytes);
  flipped[8 + 37 + 10] ^= 1;
  assert.match(await refused(flipped), /do not hash to its id/);
  assert.match(await refused(bytes.subarray(0, bytes.length - 37)), /truncated/);
  assert.match(await refused(Buffer.concat([bytes, Buffer.from('x')])), /after the end record/);
});

test.run();
