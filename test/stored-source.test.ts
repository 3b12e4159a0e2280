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
import { ContentReader } from '../src/repo/content.js';
import { listVersionFiles } from '../src/repo/version-files.js';
import { resolveRev } from '../src/repo/versions.js';
import { StoredSource } from '../src/ops/stored-source.js';
import { MstoreError } from '../src/lib/errors.js';

const root = tmpDir('mstore-stored-source-');
test.after(() => cleanup(root));

/** A 12 MiB random file committed (FastCDC: several chunks of 256 KiB-4 MiB); `fn` gets a source over it. */
async function withStored<T>(dir: string, fn: (src: StoredSource, bytes: Buffer, chunks: { id: string; pack: string; offset: number; start: number; length: number }[]) => Promise<T>): Promise<T> {
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
      return await fn(new StoredSource(reader, 'v001:blob.bin', f.oid), bytes, chunks);
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

test.run();
