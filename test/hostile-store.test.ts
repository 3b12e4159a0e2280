/**
 * Hostile store files (issue 20, items 8-10, and the blind spots "corrupted index rows, a
 * missing pack file"): a store on a read-only mount or owned by another user is read by every
 * read command; gc waits for a running reader; a damaged index (zeroed, truncated, garbage on
 * a meta or a data page, deleted rows, a row naming a missing pack, a missing pack file) is
 * named by fsck and by every command that needs it, never a signal, and `fsck --repair-index`
 * rebuilds it; a disk that fills up anywhere in a commit (packs, index, git objects, refs) gives
 * one line naming the file, nothing published, and the next commit works once there is space.
 * Tests that mount or change user need root: they say so and skip otherwise (CI runs as root).
 */
import { open as lmdbOpen } from 'lmdb';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, unlinkSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { open as openLmdb } from 'lmdb';
import { CLI, cleanup, fillPattern, mstore, tmpDir } from './helpers.js';
import { expectRefusal, versionContents, storeBytes } from './hostile-helpers.js';

const isRoot = process.getuid?.() === 0;
const skip = (what: string, why: string): void => console.log(`  skipped: ${what}: ${why}`);

/** A workspace with v001 and v002 (a random model file that changes, a small config). */
function makeStore(ws: string, bytes = 300_000): void {
  mkdirSync(ws, { recursive: true });
  assert.is(mstore(ws, ['init']).code, 0);
  writeModel(ws, 1, bytes);
  let r = mstore(ws, ['commit', '-m', 'one']);
  assert.is(r.code, 0, r.stderr);
  writeModel(ws, 2, bytes);
  r = mstore(ws, ['commit', '-m', 'two']);
  assert.is(r.code, 0, r.stderr);
}

function writeModel(ws: string, seed: number, bytes: number): void {
  const b = Buffer.alloc(bytes);
  fillPattern(b, seed);
  writeFileSync(path.join(ws, 'model.bin'), b);
  writeFileSync(path.join(ws, 'config.json'), `{"seed": ${seed}}\n`);
}

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  assert.is(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
}

/** Exit 0, nothing on stderr, not killed by a signal. */
function ok(r: { code: number; stderr: string; stdout: string }, what: string): void {
  assert.ok(r.code >= 0, `${what}: killed by a signal`);
  assert.is(r.code, 0, `${what}: ${r.stderr}${r.stdout.slice(0, 400)}`);
  assert.is(r.stderr, '', `${what}: stderr`);
}

/** Every read command on the store in `ws`, run by `run`; `dest` is a writable directory. */
function everyRead(ws: string, dest: string, run: (args: string[], cwd?: string) => { code: number; stdout: string; stderr: string }, who: string): void {
  for (const args of [['verify'], ['fsck'], ['log'], ['show', 'v001'], ['diff', 'v001', 'v002'], ['status']]) {
    ok(run(args), `${who}: ${args.join(' ')}`);
  }
  ok(run(['checkout', 'v001', '--to', path.join(dest, 'co')]), `${who}: checkout --to`);
  assert.is(readFileSync(path.join(dest, 'co', 'config.json'), 'utf8'), '{"seed": 1}\n', `${who}: checked out v001`);
  ok(run(['clone', ws, path.join(dest, 'clone')], dest), `${who}: clone from a path remote`);
  assert.is(readFileSync(path.join(dest, 'clone', 'config.json'), 'utf8'), '{"seed": 2}\n', `${who}: clone has v002`);
}

test('#20.8 a store on a read-only mount (its index written by an mstore before recipes): every read command works; a write is one line', async () => {
  if (!isRoot) return skip('read-only mount', 'needs root to mount a tmpfs');
  const dir = tmpDir('mstore-ro-');
  const mnt = path.join(dir, 'mnt');
  mkdirSync(mnt);
  sh('mount', ['-t', 'tmpfs', '-o', 'size=32m', 'tmpfs', mnt]);
  try {
    const ws = path.join(mnt, 'ws');
    makeStore(ws);
    // The index as an mstore before recipes wrote it (no 'recipes' database, which a read-only
    // environment cannot create): read as a store with no recipes.
    const env = lmdbOpen({ path: path.join(ws, '.mstore', 'index'), maxDbs: 8, compression: false });
    await env.openDB({ name: 'recipes', keyEncoding: 'binary', encoding: 'binary' }).drop();
    await env.close();
    // lmdb's reader table, left by the writes, must not be what makes reads work.
    rmSync(path.join(ws, '.mstore', 'index', 'lock.mdb'), { force: true });
    sh('mount', ['-o', 'remount,ro', mnt]);
    const dest = path.join(dir, 'out');
    mkdirSync(dest);
    everyRead(ws, dest, (args, cwd) => mstore(cwd ?? ws, args), 'read-only mount');
    const r = mstore(ws, ['tag', 'newtag', 'v001']);
    expectRefusal(r, 1, /lock.*read-only|read-only.*lock/, 'tag on a read-only mount');
  } finally {
    spawnSync('umount', [mnt]);
    cleanup(dir);
  }
});

test('#20.8 a store the user cannot write (nobody): every read command works', () => {
  if (!isRoot) return skip('another user', 'needs root to run as nobody');
  const dir = tmpDir('mstore-nobody-');
  try {
    chmodSync(dir, 0o755);
    const ws = path.join(dir, 'ws');
    makeStore(ws);
    sh('chmod', ['-R', 'a+rX,go-w', ws]);
    const dest = path.join(dir, 'out');
    mkdirSync(dest);
    chownSync(dest, Number(spawnSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).stdout.trim()), Number(spawnSync('id', ['-g', 'nobody'], { encoding: 'utf8' }).stdout.trim()));
    const before = storeBytes(ws);
    const asNobody = (args: string[], cwd?: string) => {
      const r = spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, CLI, ...args], {
        cwd: cwd ?? ws,
        encoding: 'utf8',
        env: { ...process.env, NO_COLOR: '1', HOME: dest },
      });
      return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
    };
    everyRead(ws, dest, asNobody, 'nobody');
    expectRefusal(asNobody(['tag', 'newtag', 'v001']), 1, /lock/, 'tag as nobody');
    assert.is(storeBytes(ws), before, 'reads as nobody changed nothing');
  } finally {
    cleanup(dir);
  }
});

test('#20.8 gc waits for a running reader (a shared lock), and ignores a dead one', async () => {
  const dir = tmpDir('mstore-shared-');
  try {
    const ws = path.join(dir, 'ws');
    makeStore(ws);
    const shared = path.join(ws, '.mstore', 'lock.shared');
    mkdirSync(shared, { recursive: true });
    const mine = path.join(shared, `${process.pid}-test.json`);
    const owner = (pid: number) => JSON.stringify({ pid, host: os.hostname(), since: new Date().toISOString(), command: 'verify' });
    writeFileSync(mine, owner(process.pid));
    // A reader that stays: gc gives up after its lock timeout, naming the reader, and removes nothing.
    const before = storeBytes(ws);
    const r = mstore(ws, ['gc', '--grace', '0d'], { MSTORE_LOCK_TIMEOUT_MS: '400' });
    expectRefusal(r, 1, new RegExp(`being read by pid ${process.pid}`), 'gc beside a reader');
    assert.is(storeBytes(ws), before, 'gc beside a reader removed nothing');
    // A reader that finishes: gc waits for it, then runs.
    const child = spawn(process.execPath, [CLI, 'gc', '--grace', '0d'], { cwd: ws, env: { ...process.env, NO_COLOR: '1', MSTORE_LOCK_TIMEOUT_MS: '20000' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let exited = false;
    let err = '';
    child.stderr.on('data', (d) => (err += d.toString()));
    const done = new Promise<number | null>((resolve) => child.on('exit', (code) => ((exited = true), resolve(code))));
    await new Promise((res) => setTimeout(res, 1500));
    assert.not.ok(exited, `gc did not wait for the reader (stderr: ${err})`);
    unlinkSync(mine);
    assert.is(await done, 0, `gc after the reader finished: ${err}`);
    // A reader that died (no such pid) does not hold gc.
    writeFileSync(path.join(shared, '999999-dead.json'), owner(999_999));
    const g = mstore(ws, ['gc', '--grace', '0d'], { MSTORE_LOCK_TIMEOUT_MS: '2000' });
    assert.is(g.code, 0, `gc beside a dead reader: ${g.stderr}`);
    assert.is(mstore(ws, ['verify']).code, 0);
  } finally {
    cleanup(dir);
  }
});

/** The page of the index file that holds the root of database `name` (LMDB 64-bit layout, docs/format.md §6.1). */
function dbRootPage(file: string, name: string): number {
  const b = readFileSync(file);
  const ps = b.readUInt32LE(48);
  const metas = [0, 1].map((i) => ({ main: Number(b.readBigUInt64LE(i * ps + 136)), txn: b.readBigUInt64LE(i * ps + 152) }));
  const cur = metas[0].txn >= metas[1].txn ? metas[0] : metas[1];
  const page = b.subarray(cur.main * ps, (cur.main + 1) * ps);
  for (let i = 0; i < page.readUInt16LE(20) / 2; i++) {
    const at = 24 + page.readUInt16LE(24 + 2 * i);
    const ksize = page.readUInt16LE(at + 6);
    if (page.subarray(at + 8, at + 8 + ksize).toString('latin1').replace(/\0+$/, '') === name) return Number(page.readBigUInt64LE(at + 8 + ksize + 40));
  }
  throw new Error(`no database ${name}`);
}

function overwrite(file: string, offset: number, data: Buffer): void {
  const fd = openSync(file, 'r+');
  writeSync(fd, data, 0, data.length, offset);
  closeSync(fd);
}

/** Changes index rows with lmdb itself (a damage lmdb cannot see: only the packs can). */
async function editRows(indexDir: string, edit: (chunks: { keys: Buffer[]; put: (k: Buffer, v: Buffer) => void; remove: (k: Buffer) => void }, files: { keys: Buffer[]; remove: (k: Buffer) => void }) => void): Promise<void> {
  const root = openLmdb({ path: indexDir, maxDbs: 8, compression: false, overlappingSync: false });
  const chunks = root.openDB({ name: 'chunks', keyEncoding: 'binary', encoding: 'binary' });
  const files = root.openDB({ name: 'files', keyEncoding: 'binary', encoding: 'binary' });
  root.transactionSync(() => {
    edit(
      { keys: [...chunks.getKeys()] as Buffer[], put: (k, v) => void chunks.put(k, v), remove: (k) => void chunks.remove(k) },
      { keys: [...files.getKeys()] as Buffer[], remove: (k) => void files.remove(k) },
    );
  });
  await root.close();
}

function packFiles(ws: string): string[] {
  const dir = path.join(ws, '.mstore', 'packs');
  return readdirSync(dir).flatMap((d) => readdirSync(path.join(dir, d)).map((f) => path.join(dir, d, f)));
}

interface Damage {
  name: string;
  apply: (ws: string, indexFile: string) => void | Promise<void>;
  /** The line fsck (and a command that opens the index) must print. */
  fsck: RegExp;
  /** fsck --repair-index cannot bring everything back (the data itself is gone). */
  lost?: boolean;
}

const DAMAGES: Damage[] = [
  { name: 'a zeroed data.mdb', apply: (_ws, f) => writeFileSync(f, Buffer.alloc(statSync(f).size)), fsck: /index .*data\.mdb is damaged.*fsck --repair-index/ },
  { name: 'a truncated data.mdb', apply: (_ws, f) => truncateSync(f, 3 * 4096), fsck: /index .*data\.mdb is damaged.*truncated.*fsck --repair-index/ },
  // An empty file is what a kill between lmdb's create and its first meta write leaves: an index not yet
  // made, not damage (index-check.ts); every version's content is then in packs the index does not name.
  { name: 'an empty data.mdb', apply: (_ws, f) => truncateSync(f, 0), fsck: /only in pack [0-9a-f]{64}, which is not in the index \(run 'mstore fsck --repair-index'\)/ },
  { name: 'garbage on meta page 0', apply: (_ws, f) => overwrite(f, 0, randomBytes(4096)), fsck: /index .*data\.mdb is damaged.*meta page 0.*fsck --repair-index/ },
  { name: 'garbage on the chunks root page', apply: (_ws, f) => overwrite(f, dbRootPage(f, 'chunks') * 4096, randomBytes(4096)), fsck: /index .*data\.mdb is damaged.*chunks.*fsck --repair-index/ },
  { name: 'garbage inside a files page', apply: (_ws, f) => overwrite(f, dbRootPage(f, 'files') * 4096 + 3900, randomBytes(196)), fsck: /index .*data\.mdb is damaged.*files.*fsck --repair-index/ },
  {
    name: 'deleted chunk and file rows',
    apply: (ws) => editRows(path.join(ws, '.mstore', 'index'), (c, f) => (c.remove(c.keys[0]), f.remove(f.keys[0]))),
    fsck: /not in the index|does not have/,
  },
  {
    name: 'a row pointing at a missing pack',
    apply: (ws) =>
      editRows(path.join(ws, '.mstore', 'index'), (c) => {
        for (const k of c.keys) c.put(k, Buffer.concat([Buffer.alloc(32, 0xab), Buffer.alloc(12)]));
      }),
    fsck: /points at pack abab/,
  },
  {
    name: 'chunk rows cut short',
    apply: (ws) => editRows(path.join(ws, '.mstore', 'index'), (c) => c.keys.forEach((k) => c.put(k, Buffer.alloc(7)))),
    fsck: /index .*data\.mdb is damaged.*chunk row of 7 bytes.*fsck --repair-index/,
  },
  { name: 'a missing pack file', apply: (ws) => unlinkSync(packFiles(ws).sort()[0]), fsck: /pack [0-9a-f]{64} is in the index but missing on disk/, lost: true },
];

test('#20.9 a damaged index: fsck names it, no command dies by a signal, fsck --repair-index rebuilds it', async () => {
  const dir = tmpDir('mstore-index-');
  try {
    const base = path.join(dir, 'base');
    makeStore(base);
    const contents = versionContents(base, ['v001', 'v002']);
    for (const d of DAMAGES) {
      const ws = path.join(dir, d.name.replace(/\W+/g, '-'));
      cpSync(base, ws, { recursive: true });
      const indexFile = path.join(ws, '.mstore', 'index', 'data.mdb');
      await d.apply(ws, indexFile);
      const f = mstore(ws, ['fsck']);
      assert.ok(f.code >= 0, `${d.name}: fsck killed by a signal (${f.stderr})`);
      assert.is(f.code, 1, `${d.name}: fsck must fail: ${f.stdout}${f.stderr}`);
      assert.match(f.stdout + f.stderr, d.fsck, `${d.name}: fsck names it`);
      const co = mstore(ws, ['checkout', 'v002', '--to', path.join(dir, `${path.basename(ws)}-co`)]);
      assert.ok(co.code >= 0, `${d.name}: checkout killed by a signal (${co.stderr})`);
      assert.not.match(co.stderr, /page!\?|Write error|Segmentation/, `${d.name}: checkout: no native text: ${co.stderr}`);
      if (d.fsck.source.includes('is damaged')) expectRefusal(co, 1, /index .*data\.mdb is damaged.*fsck --repair-index/, `${d.name}: checkout`);
      else if (co.code !== 0) expectRefusal(co, 1, /\S/, `${d.name}: checkout`);
      const rep = mstore(ws, ['fsck', '--repair-index']);
      assert.ok(rep.code >= 0, `${d.name}: fsck --repair-index killed by a signal`);
      if (d.lost) {
        assert.is(rep.code, 1, `${d.name}: the lost data stays a problem after the repair: ${rep.stdout}`);
        assert.match(rep.stdout, /in no pack the index knows/, `${d.name}: fsck names content no pack holds`);
        const lost = ['v001', 'v002'].map((rev) => mstore(ws, ['checkout', rev, '--to', path.join(dir, `${path.basename(ws)}-lost-${rev}`)]));
        assert.ok(lost.some((r) => r.code !== 0), `${d.name}: a version whose pack is gone does not check out`);
        for (const r of lost) if (r.code !== 0) expectRefusal(r, 1, /pack|missing|not in the store/, `${d.name}: checkout of lost content`);
        continue;
      }
      assert.is(rep.code, 0, `${d.name}: fsck --repair-index: ${rep.stdout}${rep.stderr}`);
      // verify re-hashes every byte of every version to the ids the versions name.
      const v = mstore(ws, ['verify', '--all']);
      assert.is(v.code, 0, `${d.name}: verify after the repair: ${v.stdout}${v.stderr}`);
      if (d === DAMAGES[0]) {
        assert.equal(versionContents(ws, ['v001', 'v002']), contents, `${d.name}: every version checks out as before`);
        writeModel(ws, 9, 50_000);
        ok(mstore(ws, ['commit', '-m', 'after repair']), `${d.name}: commit after the repair`);
      }
    }
  } finally {
    cleanup(dir);
  }
});

test('#20.10 a disk that fills up anywhere in a commit: one line naming the file, nothing published, the next commit works', () => {
  if (!isRoot) return skip('full disk', 'needs root to mount a small tmpfs');
  const dir = tmpDir('mstore-full-');
  const mnt = path.join(dir, 'mnt');
  mkdirSync(mnt);
  sh('mount', ['-t', 'tmpfs', '-o', 'size=12m', 'tmpfs', mnt]);
  try {
    // The template: v001 committed, v002's files written; a commit of v002 needs `need` bytes.
    const template = path.join(dir, 'template');
    mkdirSync(template);
    assert.is(mstore(template, ['init']).code, 0);
    writeModel(template, 1, 400_000);
    assert.is(mstore(template, ['commit', '-m', 'one']).code, 0);
    writeModel(template, 2, 1_500_000);
    const ws = path.join(mnt, 'ws');
    const avail = (): number => Number(spawnSync('df', ['-B1', '--output=avail', mnt], { encoding: 'utf8' }).stdout.split('\n')[1]);
    const fresh = (): void => {
      rmSync(ws, { recursive: true, force: true });
      rmSync(path.join(mnt, 'filler'), { force: true });
      cpSync(template, ws, { recursive: true });
    };
    fresh();
    const v001 = versionContents(ws, ['v001']);
    fresh();
    const free = avail();
    ok(mstore(ws, ['commit', '-m', 'two']), 'commit with room');
    const need = free - avail();
    const seen = new Set<string>();
    // Every 4 KiB (tmpfs' unit) over the last stretch, where packs are sealed and the index,
    // git objects and refs are written, and a few points inside the pack data. Each level
    // starts from the template: v001 only.
    const levels = [0, 200_000, need - 400_000];
    for (let left = need - 14 * 4096; left < need; left += 4096) levels.push(left);
    for (const left of levels) {
      fresh();
      const fill = avail() - left;
      if (fill > 0) writeFileSync(path.join(mnt, 'filler'), Buffer.alloc(fill));
      const r = mstore(ws, ['commit', '-m', 'two']);
      const what = `commit with ${left} bytes left`;
      rmSync(path.join(mnt, 'filler'), { force: true });
      if (r.code === 0) {
        assert.ok(left > need - 5 * 4096, `${what}: a commit succeeded far below what it needs (${need})`);
        assert.not.match(r.stderr, /error|Write error|page!\?/, `${what}: ${r.stderr}`);
        continue;
      }
      const line = expectRefusal(r, 1, /no space left on the device \(ENOSPC\)/, what);
      const file = /(?:writing|writer lock:) (\S+):/.exec(line)?.[1] ?? '';
      assert.ok(file.startsWith(path.join(ws, '.mstore')), `${what}: names a store file: ${line}`);
      const kind = /\/tmp\/pack-/.test(file) ? 'pack' : /index\/data\.mdb$/.test(file) ? 'index' : /git\/objects\//.test(file) ? 'git object' : /git\/refs\/|reflog/.test(file) ? 'ref' : file;
      // Nothing published: no ref names v002.
      assert.not.ok(existsSync(path.join(ws, '.mstore', 'git', 'refs', 'tags', 'v002')), `${what}: v002 is not published`);
      const f = mstore(ws, ['fsck']);
      assert.is(f.code, 0, `${what}: fsck after freeing space: ${f.stdout}${f.stderr}`);
      if (seen.has(kind)) continue;
      seen.add(kind);
      // The first failure of each kind: v001 still checks out byte for byte, and the next commit works.
      assert.equal(versionContents(ws, ['v001']), v001, `${what}: v001 intact`);
      ok(mstore(ws, ['commit', '-m', 'two']), `${what}: the next commit`);
    }
    for (const kind of ['pack', 'index', 'git object', 'ref']) assert.ok(seen.has(kind), `a failure while writing a ${kind} (seen: ${[...seen].join(', ')})`);
  } finally {
    spawnSync('umount', [mnt]);
    cleanup(dir);
  }
});

test.run();
