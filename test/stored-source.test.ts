/**
 * StoredSource (src/ops/stored-source.ts), the merge's view of a stored file: any range reads
 * back the committed bytes, across chunk boundaries too; a range past the end is refused; a
 * damaged chunk is refused naming the file and the chunk, and only when a read touches it.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { cleanup, prng, tmpDir } from './helpers.js';
import { commitHere, withStoreAt } from './in-process.js';
import { Store } from '../src/repo/store.js';
import { ContentReader } from '../src/repo/content-reader.js';
import { listVersionFiles } from '../src/repo/version-files.js';
import { resolveRev } from '../src/repo/versions.js';
import { StoredSource } from '../src/ops/stored-source.js';
import { MstoreError } from '../src/lib/errors.js';

const root = tmpDir('mstore-stored-source-');
test.after(() => cleanup(root));

/** A 12 MiB random file committed (FastCDC: several chunks of 256 KiB-4 MiB); `fn` gets a source over it. */
async function withStored<T>(
  dir: string,
  fn: (src: StoredSource, bytes: Buffer, chunks: { id: string; pack: string; offset: number; start: number; length: number }[], reader: ContentReader, oid: string) => Promise<T>,
): Promise<T> {
  const ws = path.join(root, dir);
  mkdirSync(ws);
  const bytes = randomBytes(12 * 1024 * 1024);
  writeFileSync(path.join(ws, 'blob.bin'), bytes);
  await Store.init(ws).then((s) => s.close());
  const { commit } = await commitHere(ws, 'one');
  return withStoreAt(ws, async (s) => {
    const f = (await listVersionFiles(s.repo, commit!)).find((x) => x.path === 'blob.bin')!;
    let start = 0;
    const chunks = s.index.file(Buffer.from(f.oid, 'hex'))!.chunks.map((c) => {
      const loc = s.index.chunk(c.id)!;
      const out = { id: c.id.toString('hex'), pack: loc.pack, offset: loc.offset, start, length: c.length };
      start += c.length;
      return out;
    });
    const reader = new ContentReader(s.index, s.hasher, s.packsDir);
    try {
      return await fn(new StoredSource(reader, 'v001:blob.bin', f.oid), bytes, chunks, reader, f.oid);
    } finally {
      await reader.close();
    }
  });
}

test('any range reads back the committed bytes, across chunk boundaries; past the end is refused', async () => {
  await withStored('ranges', async (src, bytes, chunks) => {
    assert.ok(chunks.length >= 3, `the file spans several chunks (${chunks.length})`);
    assert.is(src.size, bytes.length);
    const read = async (pos: number, len: number): Promise<Buffer> => {
      const into = Buffer.alloc(len);
      await src.read(into, pos);
      return into;
    };
    const rand = prng(7);
    const ranges: [number, number][] = [
      [0, bytes.length],
      [bytes.length - 1, 1],
      [bytes.length, 0],
      [0, 0],
      // each boundary, straddled
      ...chunks.slice(1).map((c): [number, number] => [c.start - 5, 10]),
      // a range over three chunks
      [chunks[0].start + chunks[0].length - 1, chunks[1].length + 2],
    ];
    for (let i = 0; i < 40; i++) {
      const pos = Math.floor(rand() * bytes.length);
      ranges.push([pos, Math.floor(rand() * Math.min(3 * 1024 * 1024, bytes.length - pos))]);
    }
    for (const [pos, len] of ranges) assert.ok((await read(pos, len)).equals(bytes.subarray(pos, pos + len)), `bytes ${pos}+${len}`);
    for (const [pos, len] of [
      [bytes.length - 1, 2],
      [-1, 1],
    ]) {
      const e = await read(pos, len).then(
        () => undefined,
        (x: Error) => x,
      );
      assert.ok(e instanceof MstoreError && e.code === 'EBADINPUT', `bytes ${pos}+${len} of ${bytes.length}: refused (${e?.message})`);
      assert.match(e!.message, 'v001:blob.bin');
    }
  });
});

test('a damaged chunk is refused naming the file and the chunk, only by reads that touch it', async () => {
  const ws = path.join(root, 'damaged');
  // Damage the second chunk's bytes in its pack, then read around it.
  const first = await withStored('damaged', async (_src, _bytes, chunks) => chunks);
  const c = first[1];
  const dir = path.join(ws, '.mstore', 'packs', c.pack.slice(0, 2));
  const pack = path.join(dir, readdirSync(dir).find((n) => n.startsWith(c.pack))!);
  const data = readFileSync(pack);
  data[c.offset + Math.floor(c.length / 2)] ^= 0x01;
  writeFileSync(pack, data);
  await withStoreAt(ws, async (s) => {
    const f = (await listVersionFiles(s.repo, await resolveRev(s.repo, 'latest'))).find((x) => x.path === 'blob.bin')!;
    const reader = new ContentReader(s.index, s.hasher, s.packsDir);
    try {
      const src = new StoredSource(reader, 'v001:blob.bin', f.oid);
      await src.read(Buffer.alloc(1000), 0); // the first chunk is sound
      const e = await src.read(Buffer.alloc(10), c.start + 1).then(
        () => undefined,
        (x: Error) => x,
      );
      assert.ok(e instanceof MstoreError && e.code === 'ECORRUPT', `the damaged chunk: ${e?.message}`);
      assert.match(e!.message, `v001:blob.bin: chunk ${c.id} in pack ${c.pack} is damaged`);
    } finally {
      await reader.close();
    }
  });
});

test('whole: proves the file by its oid whatever the read order (skipped chunks are read), and refuses a manifest of valid chunks in another order', async () => {
  await withStored('whole', async (_src, bytes, chunks, reader, oid) => {
    // In order, out of order (the end first: every chunk before it is read to fill the gap), and unread.
    for (const reads of [[[0, bytes.length]], [[bytes.length - 10, 10], [5, 100], [chunks[1].start + 3, 1000]], []]) {
      const src = new StoredSource(reader, 'v001:blob.bin', oid, { whole: true });
      for (const [pos, len] of reads) {
        const into = Buffer.alloc(len);
        await src.read(into, pos);
        assert.ok(into.equals(bytes.subarray(pos, pos + len)), `bytes ${pos}+${len}`);
      }
      await src.proveWhole();
    }
    // A read that skips a chunk (the merge skips a tensor the adapter replaces) hashes it in
    // passing: proving the file after the last read reads no chunk again.
    let reads = 0;
    const counting = Object.create(reader) as ContentReader;
    counting.chunk = (c, name) => (reads++, reader.chunk(c, name));
    const skipping = new StoredSource(counting, 'v001:blob.bin', oid, { whole: true });
    await skipping.read(Buffer.alloc(chunks[1].start), 0);
    await skipping.read(Buffer.alloc(bytes.length - chunks[2].start), chunks[2].start);
    await skipping.proveWhole();
    assert.is(reads, chunks.length, 'each chunk read once');
    // Reads at once (the merge reads the adapter's next factors while it merges a tensor), the
    // earlier chunks' reads slower than the later ones': each read gets its bytes, and the file
    // still hashes in order.
    const at = new Map(chunks.map((c, i) => [c.id, i]));
    const slowFirst = Object.create(reader) as ContentReader;
    slowFirst.chunk = async (c, name) => {
      await new Promise((r) => setTimeout(r, (chunks.length - at.get(c.id.toString('hex'))!) * 15));
      return reader.chunk(c, name);
    };
    reader.wholeProven.clear(); // proven above: prove it again
    const overlapping = new StoredSource(slowFirst, 'v001:blob.bin', oid, { whole: true });
    const asked = [
      [bytes.length - 10, 10],
      [chunks[1].start + 3, 1000],
      [5, 100],
    ];
    const got = await Promise.all(
      asked.map(async ([pos, len]) => {
        const into = Buffer.alloc(len);
        await overlapping.read(into, pos);
        return into;
      }),
    );
    asked.forEach(([pos, len], i) => assert.ok(got[i].equals(bytes.subarray(pos, pos + len)), `bytes ${pos}+${len}, read at once`));
    await overlapping.proveWhole();
    // The first two chunks swapped in the manifest: each still re-hashes to its id, the file does not.
    const swapped = Object.create(reader) as ContentReader;
    swapped.manifest = (o, name) => {
      const m = reader.manifest(o, name);
      return { size: m.size, chunks: [m.chunks[1], m.chunks[0], ...m.chunks.slice(2)] };
    };
    const plain = new StoredSource(swapped, 'v001:blob.bin', oid);
    const into = Buffer.alloc(bytes.length);
    await plain.read(into, 0);
    assert.not.ok(into.equals(bytes), 'the swapped manifest reads other bytes, every chunk valid');
    const src = new StoredSource(swapped, 'v001:blob.bin', oid, { whole: true });
    await src.read(into, 0);
    let e: MstoreError | undefined;
    await src.proveWhole().catch((x: MstoreError) => (e = x));
    assert.ok(e instanceof MstoreError && e.code === 'ECORRUPT', `refused: ${e?.message}`);
    assert.match(e!.message, `v001:blob.bin: content hashes to `);
    assert.match(e!.message, `expected ${oid} (file manifest damaged)`);
  });
});

test.run();
