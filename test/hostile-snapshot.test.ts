/**
 * Hostile input, class "files that change while they are read" (issue 20, items 1 and 5, and
 * the stat cache's racy-git rule), through the real CLI:
 * - a file rewritten in place while `commit` reads it (test/fs-hooks.ts does it at a fixed
 *   point, no timing race) is stored as one whole version of it, never a mix; a file that
 *   keeps changing is refused with one line naming it and the store is unchanged. Every path
 *   through the code: a small text file (git blob), a small binary (one chunk), a text file
 *   just under 1 MiB, a safetensors file over it (chunked);
 * - a damaged stat-cache entry never makes a version name an object the store lacks; a tree
 *   that would name a truly missing object is refused, nothing published;
 * - the racy-git rule: a cache entry recorded in the same clock tick as a change of the file
 *   (mtime or ctime) is not trusted by status or commit, and commit records no such entry.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { cleanup, fillPattern, git, layerTensors, mstore, mstoreJson, tmpDir, writeSafetensors } from './helpers.js';
import { expectRefusal, refusedUnchanged, storeBytes } from './hostile-helpers.js';
import { StoreIndex, type StatEntry } from '../src/repo/index-db.js';

const HOOK = pathToFileURL(path.join(path.dirname(fileURLToPath(import.meta.url)), 'fs-hooks.js')).href;

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** The environment that makes `suffix` change to the bytes of `to` while mstore reads it. */
function changingEnv(suffix: string, to: string, mode: 'once' | 'always'): Record<string, string> {
  return {
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${HOOK}`.trim(),
    MSTORE_TEST_CHANGE_SUFFIX: suffix,
    MSTORE_TEST_CHANGE_TO: to,
    MSTORE_TEST_CHANGE_MODE: mode,
  };
}

function ok(ws: string, args: string[], env: Record<string, string> = {}): string {
  const r = mstore(ws, args, env);
  assert.is(r.code, 0, `mstore ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** A new workspace with config.json and the given files, committed as v001. */
function workspace(write: (ws: string) => void): { dir: string; ws: string } {
  const dir = tmpDir('mstore-snapshot-');
  const ws = path.join(dir, 'ws');
  mkdirSync(ws);
  ok(ws, ['init']);
  writeFileSync(path.join(ws, 'config.json'), '{"hidden_size": 64}\n');
  write(ws);
  ok(ws, ['commit', '-m', 'v1']);
  return { dir, ws };
}

/** Version `rev` checked out elsewhere; returns the directory. */
function checkedOut(ws: string, dir: string, rev: string): string {
  const out = path.join(dir, `out-${rev}-${Math.random().toString(16).slice(2)}`);
  ok(ws, ['checkout', rev, '--to', out]);
  return out;
}

/** The bytes of `rel` in version `rev`. */
function stored(ws: string, dir: string, rev: string, rel: string): Buffer {
  return readFileSync(path.join(checkedOut(ws, dir, rev), rel));
}

function textOf(size: number, letter: string): Buffer {
  const line = `${letter.repeat(63)}\n`;
  return Buffer.from(line.repeat(Math.ceil(size / line.length)).slice(0, size - 1) + '\n');
}

function binaryOf(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  fillPattern(b, seed);
  return b;
}

interface Case {
  what: string;
  rel: string;
  /** Writes version `n` (1, 2, 3: three different contents) of the file. */
  write: (abs: string, n: number) => void;
}

const CASES: Case[] = [
  { what: 'a small text file (git blob)', rel: 'notes.txt', write: (a, n) => writeFileSync(a, textOf(20_000, 'abc'[n - 1])) },
  { what: 'a small binary file (one chunk)', rel: 'bin/weights.bin', write: (a, n) => writeFileSync(a, binaryOf(200_000, n)) },
  { what: 'a text file just under 1 MiB', rel: 'data/train.jsonl', write: (a, n) => writeFileSync(a, textOf(1024 * 1024 - 10, 'xyz'[n - 1])) },
  { what: 'a safetensors file over 1 MiB (chunked)', rel: 'model.safetensors', write: (a, n) => writeSafetensors(a, layerTensors(3, 512, 1024, 10 * n)) },
];

/** Every case's file at content 1, in one workspace (v001). */
function casesWorkspace(): { dir: string; ws: string } {
  return workspace((ws) => {
    for (const c of CASES) {
      mkdirSync(path.dirname(path.join(ws, c.rel)), { recursive: true });
      c.write(path.join(ws, c.rel), 1);
    }
  });
}

test('#20.1 a file rewritten once while commit reads it is stored whole (old or new, never a mix), for every kind of file', () => {
  const { dir, ws } = casesWorkspace();
  try {
    CASES.forEach((c, i) => {
      const abs = path.join(ws, c.rel);
      c.write(abs, 2);
      const two = readFileSync(abs);
      const three = path.join(dir, `three-${i}`);
      c.write(three, 3);
      const threeBytes = readFileSync(three);
      const rev = `v00${i + 2}`;
      const r = mstore(ws, ['commit', '-m', rev], changingEnv(`/${c.rel}`, three, 'once'));
      assert.is(r.code, 0, `${c.what}: commit while it changes once: ${r.stderr}`);
      assert.equal(readFileSync(abs), threeBytes, `${c.what}: the hook rewrote the file`);
      const got = sha(stored(ws, dir, rev, c.rel));
      assert.ok(got === sha(two) || got === sha(threeBytes), `${c.what}: ${rev} holds ${got}: neither the old (${sha(two)}) nor the new content (${sha(threeBytes)})`);
    });
    ok(ws, ['verify', '--all']);
  } finally {
    cleanup(dir);
  }
});

test('#20.1 a file that keeps changing while commit reads it is refused, the store unchanged, for every kind of file', () => {
  const { dir, ws } = casesWorkspace();
  try {
    CASES.forEach((c, i) => {
      c.write(path.join(ws, c.rel), 2);
      const three = path.join(dir, `three-${i}`);
      c.write(three, 3);
      const esc = c.rel.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
      refusedUnchanged(ws, ['v001'], `${c.what} keeps changing`, 1, new RegExp(`${esc}.*changed while it was being read`), () =>
        mstore(ws, ['commit', '-m', 'v2'], changingEnv(`/${c.rel}`, three, 'always')),
      );
    });
    const log = mstoreJson<{ version: string }[]>(ws, ['log']);
    assert.equal(log.map((v) => v.version), ['v001'], 'no version was published');
    // status hashes the same way (no chunks): it names the file too, and changes nothing.
    const bytes = storeBytes(ws);
    expectRefusal(mstore(ws, ['status'], changingEnv('/bin/weights.bin', path.join(dir, 'three-1'), 'always')), 1, /bin\/weights\.bin.*changed while it was being read/, 'status of a file that keeps changing');
    assert.is(storeBytes(ws), bytes, 'status changed nothing');
  } finally {
    cleanup(dir);
  }
});

// ---------------------------------------------------------------------------------------
// The stat cache (lmdb `stat` table, src/repo/index-db.ts), read and damaged directly.

async function withIndex<T>(ws: string, fn: (ix: StoreIndex) => T): Promise<T> {
  const ix = StoreIndex.open(path.join(ws, '.mstore', 'index'));
  try {
    return fn(ix);
  } finally {
    await ix.close();
  }
}

async function editStat(ws: string, rel: string, edit: (e: StatEntry) => StatEntry): Promise<void> {
  await withIndex(ws, (ix) => {
    const e = ix.stat(rel);
    assert.ok(e, `a stat cache entry for ${rel}`);
    ix.updateStats(new Map([[rel, edit({ ...e })]]));
  });
}

/** The stat of `abs` as the cache records it (src/repo/workspace.ts statOf). */
function statNow(abs: string): Pick<StatEntry, 'size' | 'mtimeNs' | 'ctimeNs' | 'ino' | 'mode'> {
  const s = statSync(abs, { bigint: true });
  return { size: Number(s.size), mtimeNs: s.mtimeNs.toString(), ctimeNs: s.ctimeNs.toString(), ino: Number(s.ino), mode: Number(s.mode) };
}

test('#20.5 a stat-cache entry naming a blob that does not exist is dropped and the file hashed', async () => {
  const dir = tmpDir('mstore-snapshot-');
  const ws = path.join(dir, 'ws');
  try {
    mkdirSync(ws);
    ok(ws, ['init']);
    writeFileSync(path.join(ws, 'config.json'), '{"hidden_size": 64}\n');
    writeSafetensors(path.join(ws, 'model.safetensors'), layerTensors(2, 256, 512, 5));
    ok(ws, ['commit', '-m', 'v1']);
    const out1 = checkedOut(ws, dir, 'v001');
    const v1 = readFileSync(path.join(out1, 'config.json'));
    const m1 = sha(readFileSync(path.join(out1, 'model.safetensors')));
    // A text file's entry (git blob) and a large file's (git-lfs pointer) point at nothing.
    await editStat(ws, 'config.json', (e) => ({ ...e, blob: '1'.repeat(40) }));
    await editStat(ws, 'model.safetensors', (e) => ({ ...e, blob: '2'.repeat(40) }));
    writeFileSync(path.join(ws, 'new.txt'), 'a new file\n');
    ok(ws, ['commit', '-m', 'v2']);
    const out2 = checkedOut(ws, dir, 'v002');
    assert.equal(readFileSync(path.join(out2, 'config.json')), v1, 'config.json in v002');
    assert.is(sha(readFileSync(path.join(out2, 'model.safetensors'))), m1, 'model.safetensors in v002');
    ok(ws, ['verify', '--all']);
    ok(ws, ['fsck']);
    const tree = git(path.join(ws, '.mstore', 'git'), ['ls-tree', '-r', 'v002^{commit}']);
    assert.not.match(tree.stdout, /1111111111|2222222222/, 'the tree names no damaged blob id');
  } finally {
    cleanup(dir);
  }
});

test('#20.5 a version whose tree would name a missing object is refused, nothing published', () => {
  const dir = tmpDir('mstore-snapshot-');
  const ws = path.join(dir, 'ws');
  try {
    mkdirSync(ws);
    ok(ws, ['init']);
    mkdirSync(path.join(ws, 'sub'));
    writeFileSync(path.join(ws, 'keep.txt'), 'kept outside the committed paths\n');
    writeFileSync(path.join(ws, 'sub', 'a.txt'), 'first\n');
    ok(ws, ['commit', '-m', 'v1']);
    const gitdir = path.join(ws, '.mstore', 'git');
    const blob = git(gitdir, ['rev-parse', 'v001^{commit}:keep.txt']).stdout.trim();
    assert.match(blob, /^[0-9a-f]{40}$/);
    const loose = path.join(gitdir, 'objects', blob.slice(0, 2), blob.slice(2));
    assert.ok(existsSync(loose), 'the blob is a loose object');
    renameSync(loose, path.join(dir, 'lost-blob')); // the store loses keep.txt's blob
    writeFileSync(path.join(ws, 'sub', 'a.txt'), 'second\n');
    const refs = git(gitdir, ['show-ref']).stdout;
    const bytes = storeBytes(ws);
    const r = mstore(ws, ['commit', 'sub', '-m', 'v2']);
    expectRefusal(r, 1, new RegExp(`keep\\.txt.*${blob}|${blob}.*keep\\.txt`), 'commit of a tree naming a missing blob');
    assert.is(storeBytes(ws), bytes, 'the store is unchanged');
    assert.is(git(gitdir, ['show-ref']).stdout, refs, 'no ref moved');
  } finally {
    cleanup(dir);
  }
});

// ---------------------------------------------------------------------------------------
// The racy-git rule. A file changed in the same clock tick as the moment its entry was
// recorded keeps its size and its timestamps: the stat says "unchanged". The test makes that
// state exactly: the entry gets the file's current stat and the old content's ids, recorded
// `at` 1 ms after the file's newest timestamp.

test('racy-git: entries recorded in the tick of a change (same size; mtime, or only ctime, new) are not trusted; racy files are not recorded', async () => {
  const dir = tmpDir('mstore-snapshot-');
  const ws = path.join(dir, 'ws');
  try {
    mkdirSync(ws);
    ok(ws, ['init']);
    const racyM = path.join(ws, 'racy-mtime.txt');
    const racyC = path.join(ws, 'racy-ctime.txt');
    const future = path.join(ws, 'future.txt');
    writeFileSync(racyM, 'content A, same size\n');
    writeFileSync(racyC, 'content A, same size\n');
    writeFileSync(future, 'stamped in the future\n');
    const t = new Date(Date.now() + 60_000);
    utimesSync(future, t, t);
    await new Promise((r) => setTimeout(r, 30)); // the other files leave the racy window
    ok(ws, ['commit', '-m', 'v1']);
    await withIndex(ws, (ix) => {
      assert.is(ix.stat('future.txt'), undefined, 'commit records no entry for a file whose mtime is within the racy window of the scan');
      assert.ok(ix.stat('racy-mtime.txt'), 'an entry for a settled file');
    });
    for (const abs of [racyM, racyC]) {
      const before = statSync(abs);
      writeFileSync(abs, 'content B, same size\n');
      // Tools that keep timestamps (cp -p, rsync -t, tar) put an old mtime back: only ctime is new.
      if (abs === racyC) utimesSync(abs, before.atime, new Date(before.mtimeMs - 3_600_000));
      const now = statNow(abs);
      const newest = BigInt(now.mtimeNs) > BigInt(now.ctimeNs) ? BigInt(now.mtimeNs) : BigInt(now.ctimeNs);
      await editStat(ws, path.basename(abs), (e) => ({ ...e, ...now, at: (newest + 1_000_000n).toString() }));
    }
    const st = mstoreJson<{ modified: string[] }>(ws, ['status']);
    assert.equal(st.modified, ['racy-ctime.txt', 'racy-mtime.txt'], 'status sees both changes');
    ok(ws, ['commit', '-m', 'v2']);
    const out = checkedOut(ws, dir, 'v002');
    for (const n of ['racy-ctime.txt', 'racy-mtime.txt']) {
      assert.is(readFileSync(path.join(out, n), 'utf8'), 'content B, same size\n', `commit stores the change of ${n}`);
    }
  } finally {
    cleanup(dir);
  }
});

test.run();
