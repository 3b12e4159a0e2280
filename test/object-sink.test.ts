/**
 * The one write path (src/repo/object-sink.ts) on a real store: data before the index,
 * manifests recorded with their chunks, nothing stored twice, git objects only under their
 * id, and what abandon(keep) leaves after a failure.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { Store } from '../src/repo/store.js';
import { encodeManifest } from '../src/repo/index-db.js';
import { listPackFiles } from '../src/repo/reindex.js';
import { sha256 } from '../src/lib/hashing.js';
import { MstoreError } from '../src/lib/errors.js';
import { cleanup, tmpDir } from './helpers.js';

const chunk = (n: number): { id: Buffer; data: Buffer } => {
  const data = randomBytes(n);
  return { id: sha256(data), data };
};

async function withStore(fn: (store: Store) => Promise<void>): Promise<void> {
  const dir = tmpDir('sink');
  const store = await Store.init(dir, { bare: true });
  try {
    await store.withLock('test', () => fn(store));
  } finally {
    await store.close();
    cleanup(dir);
  }
}

test('nothing is in the index before publish; chunks, manifest and stats after it, in one go', () =>
  withStore(async (store) => {
    const sink = store.sink();
    const a = chunk(1000);
    const b = chunk(2000);
    await sink.addChunk(a.id, a.data);
    await sink.addChunk(b.id, b.data);
    const oid = sha256(Buffer.concat([a.data, b.data]));
    await sink.addFile(oid, 3000, encodeManifest([{ id: a.id, length: 1000 }, { id: b.id, length: 2000 }]));
    assert.ok(sink.hasChunk(a.id) && sink.hasFile(oid), 'the sink knows what it took');
    assert.not.ok(store.index.hasChunk(a.id), 'not published yet');
    assert.not.ok(store.index.hasFile(oid));
    await sink.publish();
    assert.ok(store.index.hasChunk(a.id) && store.index.hasChunk(b.id));
    assert.equal(store.index.file(oid)?.size, 3000);
    assert.equal(store.index.file(oid)?.chunks.map((c) => c.id.toString('hex')), [a.id.toString('hex'), b.id.toString('hex')]);
    assert.equal([sink.newChunks, sink.newFiles, sink.newBytes], [2, 1, 3000]);
  }),
);

test('a chunk or manifest already stored, or already taken, is not written again', () =>
  withStore(async (store) => {
    const a = chunk(500);
    const first = store.sink();
    await first.addChunk(a.id, a.data);
    assert.is(first.addChunk(a.id, a.data), undefined, 'taken by this sink');
    await first.publish();
    const second = store.sink();
    assert.is(second.addChunk(a.id, a.data), undefined, 'in the index');
    await second.publish();
    assert.equal(second.newChunks, 0);
    assert.equal((await listPackFiles(store.packsDir)).length, 1, 'one pack, not two');
  }),
);

test('publishBehind records chunks while writing goes on; a manifest waits for the publish that seals it', () =>
  withStore(async (store) => {
    const sink = store.sink();
    const a = chunk(4096);
    await sink.addChunk(a.id, a.data);
    sink.publishBehind();
    const b = chunk(4096);
    await sink.addChunk(b.id, b.data);
    const oid = sha256(Buffer.concat([a.data, b.data]));
    await sink.addFile(oid, 8192, encodeManifest([{ id: a.id, length: 4096 }, { id: b.id, length: 4096 }]));
    await sink.publish();
    assert.ok(store.index.hasChunk(a.id) && store.index.hasChunk(b.id));
    assert.equal(store.index.file(oid)?.size, 8192);
    assert.equal(store.index.packIds().length, 2);
  }),
);

test('abandon without keep leaves the store as it was: no pack, no index entry, no temporary file', () =>
  withStore(async (store) => {
    const sink = store.sink(1024);
    for (let i = 0; i < 5; i++) {
      const c = chunk(800);
      await sink.addChunk(c.id, c.data); // each seals the one before: packs on disk, none indexed
    }
    await sink.abandon(false);
    assert.equal(await listPackFiles(store.packsDir), []);
    assert.equal(store.index.packIds(), []);
    assert.equal(readdirSync(store.tmpDir), []);
  }),
);

test('abandon with keep publishes what arrived whole (a rerun need not send it again)', () =>
  withStore(async (store) => {
    const sink = store.sink();
    const a = chunk(700);
    await sink.addChunk(a.id, a.data);
    await sink.abandon(true);
    assert.ok(store.index.hasChunk(a.id));
    assert.equal((await listPackFiles(store.packsDir)).length, 1);
  }),
);

test('a git object is stored only under the id it hashes to', () =>
  withStore(async (store) => {
    const sink = store.sink();
    const content = Buffer.from('hello sink\n');
    const id = await sink.addGitObject('blob', content);
    assert.ok(await sink.hasGitObject(id));
    assert.is(await sink.addGitObject('blob', content, id), id, 'present: nothing written, same id');
    const wrong = 'f'.repeat(40);
    try {
      await sink.addGitObject('blob', Buffer.from('other bytes'), wrong);
      assert.unreachable('a mismatched id was accepted');
    } catch (e) {
      assert.instance(e, MstoreError);
      assert.is((e as MstoreError).code, 'ECORRUPT');
    }
    assert.not.ok(await sink.hasGitObject(wrong));
    assert.ok(readdirSync(path.join(store.gitdir, 'objects')).length > 0);
  }),
);

test('a ref write syncs its own repository only: another store removed meanwhile does not fail it', async () => {
  const goneDir = tmpDir('sink-gone');
  const gone = await Store.init(goneDir, { bare: true });
  await gone.withLock('test', () => gone.sink().addGitObject('blob', Buffer.from('soon gone\n')).then(() => undefined));
  await gone.close();
  cleanup(goneDir);
  await withStore(async (store) => {
    const id = await store.sink().addGitObject('blob', Buffer.from('kept\n'));
    await store.repo.writeRef('refs/tags/kept', id, true);
    assert.is(await store.repo.readRef('refs/tags/kept'), id);
  });
});

test.run();
