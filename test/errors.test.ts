/**
 * Bad input, through the real CLI: one clear line on stderr that starts with `mstore: `,
 * a non-zero exit (1 for bad data and state, 2 for bad usage), and the store unchanged
 * (its refs, its pack files and `log --json` are the same before and after).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import os from 'node:os';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync, chownSync, closeSync, cpSync, existsSync, lstatSync, mkdirSync, openSync, readFileSync, readSync, readdirSync,
  symlinkSync, truncateSync, utimesSync, writeFileSync, writeSync,
} from 'node:fs';
import { CLI, cleanup, layerTensors, mstore, sha256File, tmpDir, treeDigest, writeModelDir, writeSafetensors, type RunResult } from './helpers.js';
import { storeBytes } from './hostile-helpers.js';
import { ERROR_CODES, MstoreError, type ErrorCode } from '../src/lib/errors.js';
import { exitStatus, exitStatusOf } from '../src/cli/exit-codes.js';
import { Store } from '../src/repo/store.js';
import { resolveRev } from '../src/repo/versions.js';
import { openRemote, openUrl } from '../src/remote/open.js';
import { removeRemote } from '../src/remote/config.js';
import { pull } from '../src/remote/pull.js';
import { backup, chooseBackup } from '../src/ops/copy/backups.js';
import { setLabels } from '../src/ops/labels.js';
import { deleteTag } from '../src/ops/tags.js';
import { restoreRef } from '../src/ops/retention/remove.js';
import { versionSide } from '../src/ops/diff/sides.js';
import { remoteDeployStatus } from '../src/deploy/client.js';

// ---------------------------------------------------------------------------------------
// helpers

/** Runs mstore with a time limit and optionally as another user (uid/gid). */
function run(cwd: string, args: string[], opts: { env?: Record<string, string>; uid?: number; gid?: number; timeoutMs?: number } = {}): RunResult & { ms: number } {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1', ...opts.env },
    uid: opts.uid,
    gid: opts.gid,
    timeout: opts.timeoutMs ?? 60_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error) throw new Error(`mstore ${args.join(' ')}: ${r.error.message}`);
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, ms: performance.now() - t0 };
}

function ok(cwd: string, args: string[]): string {
  const r = mstore(cwd, args);
  assert.is(r.code, 0, `mstore ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/**
 * The error contract: exit `code`; stderr is one line starting `mstore: ` that matches
 * `re` (a usage error may add the fixed hint line `(see mstore --help)`); no stack trace.
 */
function expectError(r: RunResult, code: number, re: RegExp, what: string): string {
  // a stack trace through the minified bundle is one enormous line: show its start and end
  const shown = r.stderr.length > 600 ? `${r.stderr.slice(0, 200)} [...] ${r.stderr.slice(-400)}` : r.stderr;
  assert.is(r.code, code, `${what}: exit code (stderr: ${shown})`);
  const lines = r.stderr.replace(/\n$/, '').split('\n');
  const extra = lines.slice(1).filter((l) => l !== '(see mstore --help)');
  assert.equal(extra.length, 0, `${what}: one line on stderr, got:\n${shown}`);
  assert.match(lines[0], /^mstore: /, `${what}: starts with 'mstore: '`);
  assert.match(lines[0], re, `${what}: message`);
  return lines[0];
}

function walkFiles(dir: string, rel = ''): string[] {
  const out: string[] = [];
  let names: string[];
  try {
    names = readdirSync(path.join(dir, rel)).sort();
  } catch {
    return out;
  }
  for (const name of names) {
    const p = rel ? `${rel}/${name}` : name;
    if (lstatSync(path.join(dir, p)).isDirectory()) out.push(...walkFiles(dir, p));
    else out.push(p);
  }
  return out;
}

/**
 * A digest of the whole store: every file under .mstore byte for byte (refs, ref history, git
 * objects, packs, index, config: hostile-helpers' storeBytes) and what `log --json` says.
 */
function storeState(ws: string): string {
  const log = mstore(ws, ['log', '--json']);
  assert.is(log.code, 0, `log --json: ${log.stderr}`);
  return createHash('sha256').update(storeBytes(ws)).update(log.stdout).digest('hex');
}

function temps(dir: string): string[] {
  return walkFiles(dir).filter((p) => path.posix.basename(p).startsWith('.mstore-tmp-'));
}

let template: string | undefined;

/**
 * A workspace with v001: an 8 MiB safetensors (2 tensors, several chunks), small files.
 * Built once and copied for each test (a copy has new inodes, so its stat cache does not
 * match and files are re-hashed: slower per command, still correct).
 */
function makeStore(): string {
  if (!template) {
    template = tmpDir('mstore-err-template-');
    ok(template, ['init']);
    writeModelDir(template, { tensors: layerTensors(2, 256, 512, 1), step: 1 });
    writeSafetensors(path.join(template, 'big.safetensors'), layerTensors(2, 2048, 1024, 700));
    ok(template, ['commit', '-m', 'one']);
  }
  const ws = tmpDir('mstore-err-');
  cpSync(template, ws, { recursive: true });
  return ws;
}

test.after(() => {
  if (template) cleanup(template);
});

/** Runs git with a fixed identity (commit-tree needs one). */
function gitRun(gitdir: string, args: string[], input?: string): string {
  const r = spawnSync('git', [`--git-dir=${gitdir}`, ...args], {
    encoding: 'utf8',
    input,
    env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t' },
  });
  assert.is(r.status, 0, `git ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

function chownR(p: string, uid: number, gid: number): void {
  chownSync(p, uid, gid);
  if (lstatSync(p).isDirectory()) for (const n of readdirSync(p)) chownR(path.join(p, n), uid, gid);
}

// ---------------------------------------------------------------------------------------
// usage errors: exit 2

test('unknown revision: exit 1 naming it, nothing created, store unchanged', () => {
  const ws = makeStore();
  try {
    const before = storeState(ws);
    expectError(mstore(ws, ['show', 'v999']), 1, /unknown revision 'v999'/, 'show v999');
    expectError(mstore(ws, ['log', 'nosuch']), 1, /unknown revision 'nosuch'/, 'log nosuch');
    expectError(mstore(ws, ['show', 'v001~5']), 1, /revision 'v001~5' goes past the first version/, 'show v001~5');
    expectError(mstore(ws, ['tag', 'prod', 'v999']), 1, /unknown revision 'v999'/, 'tag prod v999');
    const dest = path.join(ws, 'out');
    expectError(mstore(ws, ['checkout', 'v999', '--to', dest]), 1, /unknown revision 'v999'/, 'checkout v999 --to');
    assert.not.ok(existsSync(dest), 'checkout of an unknown revision creates no directory');
    expectError(mstore(ws, ['checkout', 'v999']), 1, /unknown revision 'v999'/, 'checkout v999');
    assert.is(storeState(ws), before);
  } finally {
    cleanup(ws);
  }
});

test('unknown flag, unknown command, missing argument: exit 2, store unchanged', () => {
  const ws = makeStore();
  try {
    const before = storeState(ws);
    expectError(mstore(ws, ['log', '--bogus']), 2, /Unknown argument: bogus/, 'log --bogus');
    writeFileSync(path.join(ws, 'new.txt'), 'would be committed');
    expectError(mstore(ws, ['commit', '-m', 'x', '--bogus']), 2, /Unknown argument: bogus/, 'commit --bogus');
    expectError(mstore(ws, ['frobnicate']), 2, /frobnicate/, 'unknown command');
    expectError(mstore(ws, ['show']), 2, /Not enough non-option arguments: got 0, need at least 1/, 'show without a revision');
    assert.is(storeState(ws), before, 'no version from a commit with a bad flag');
  } finally {
    cleanup(ws);
  }
});

test('commit without -m, or with an empty message: exit 2, no version', () => {
  const ws = makeStore();
  try {
    writeFileSync(path.join(ws, 'new.txt'), 'would be committed');
    const before = storeState(ws);
    expectError(mstore(ws, ['commit']), 2, /message/, 'commit without -m');
    expectError(mstore(ws, ['commit', '-m', '']), 2, /message/, 'commit -m ""');
    expectError(mstore(ws, ['commit', '-m', '   ']), 2, /message/, 'commit -m "   "');
    assert.is(storeState(ws), before);
  } finally {
    cleanup(ws);
  }
});

test('--status bogus: exit 2 listing the allowed values; --meta without = : exit 2', () => {
  const ws = makeStore();
  try {
    writeFileSync(path.join(ws, 'new.txt'), 'would be committed');
    const before = storeState(ws);
    expectError(mstore(ws, ['commit', '-m', 'x', '--status', 'bogus']), 2, /bogus.*completed/, '--status bogus');
    expectError(mstore(ws, ['commit', '-m', 'x', '--meta', 'novalue']), 2, /--meta.*novalue/, '--meta novalue');
    expectError(mstore(ws, ['commit', '-m', 'x', '--line', 'v002']), 2, /invalid line name 'v002'.*vNNN/, '--line v002');
    assert.is(storeState(ws), before);
  } finally {
    cleanup(ws);
  }
});

// Regression: yargs' fail() handler used to rethrow its YError (a stack trace, exit 1).
test('-C without a directory is a one-line usage error (exit 2)', () => {
  const ws = makeStore();
  try {
    const before = storeState(ws);
    expectError(mstore(ws, ['log', '-C']), 2, /Not enough arguments following: C( \(see mstore --help\))?$/, 'log -C');
    assert.is(storeState(ws), before);
  } finally {
    cleanup(ws);
  }
});

// Regression: `log -n abc` used to parse to NaN and print nothing with exit 0.
test('log -n with a non-number is a usage error (exit 2)', () => {
  const ws = makeStore();
  try {
    expectError(mstore(ws, ['log', '-n', 'abc']), 2, /-n expects a non-negative integer/, 'log -n abc');
  } finally {
    cleanup(ws);
  }
});

// ---------------------------------------------------------------------------------------
// bad input files: exit 1 naming the file

test('--params / --metrics: invalid JSON, not an object, missing, a directory: exit 1 naming the file', () => {
  const ws = makeStore();
  try {
    writeFileSync(path.join(ws, 'new.txt'), 'would be committed');
    writeFileSync(path.join(ws, 'params.json'), '{"lr": 1e-4,,}');
    writeFileSync(path.join(ws, 'metrics.json'), '[1, 2]');
    mkdirSync(path.join(ws, 'adir.json'));
    const before = storeState(ws);
    expectError(mstore(ws, ['commit', '-m', 'x', '--params', 'params.json']), 1, /--params.*params\.json.*JSON/, 'invalid JSON');
    expectError(mstore(ws, ['commit', '-m', 'x', '--metrics', 'metrics.json']), 1, /--metrics.*metrics\.json.*object/, 'JSON array');
    expectError(mstore(ws, ['commit', '-m', 'x', '--params', 'gone/params.json']), 1, /gone\/params\.json.*ENOENT/, 'dangling path');
    expectError(mstore(ws, ['commit', '-m', 'x', '--metrics', 'adir.json']), 1, /adir\.json.*EISDIR/, 'a directory');
    assert.is(storeState(ws), before);
  } finally {
    cleanup(ws);
  }
});

/**
 * Root reads any file whatever its mode, so as root the commit runs as `nobody` (uid 65534)
 * over a workspace chowned to it: then `chmod 000` really denies the read (EACCES). Run as
 * another user, the plain chmod is enough.
 */
test('an unreadable workspace file (chmod 000, read as a non-root user): exit 1 naming it, no version, no leftover pack', () => {
  const ws = makeStore();
  try {
    const asRoot = process.getuid?.() === 0;
    const user = asRoot ? { uid: 65534, gid: 65534 } : {};
    // a big binary (chunked path) that is readable, then one that is not
    writeSafetensors(path.join(ws, 'a-readable.safetensors'), layerTensors(1, 1024, 1024, 4242));
    const secret = path.join(ws, 'weights.bin');
    const fd = openSync(secret, 'w');
    writeSync(fd, Buffer.alloc(3 * 1024 * 1024, 7));
    closeSync(fd);
    if (asRoot) chownR(ws, 65534, 65534);
    chmodSync(secret, 0o000);
    const before = storeState(ws);
    const packsBefore = walkFiles(path.join(ws, '.mstore', 'packs'));
    const r = run(ws, ['commit', '-m', 'x'], user);
    expectError(r, 1, /weights\.bin.*EACCES/, 'unreadable big file');
    assert.equal(walkFiles(path.join(ws, '.mstore', 'packs')), packsBefore, 'the packs the failed commit wrote are removed');
    assert.equal(walkFiles(path.join(ws, '.mstore', 'tmp')), [], 'no temporary pack left');
    // an unreadable small text file (the git-blob path)
    chmodSync(secret, 0o644);
    writeFileSync(path.join(ws, 'notes.txt'), 'private');
    if (asRoot) chownSync(path.join(ws, 'notes.txt'), 65534, 65534);
    chmodSync(path.join(ws, 'notes.txt'), 0o000);
    expectError(run(ws, ['commit', '-m', 'x'], user), 1, /notes\.txt.*EACCES/, 'unreadable text file');
    assert.is(storeState(ws), before);
    // readable again: the same commit goes through
    chmodSync(path.join(ws, 'notes.txt'), 0o644);
    const c = run(ws, ['commit', '-m', 'x', '--json'], user);
    assert.is(c.code, 0, c.stderr);
    assert.is((JSON.parse(c.stdout) as { version: string }).version, 'v002');
  } finally {
    cleanup(ws);
  }
});

test('a FIFO in the workspace is skipped with a warning naming it (commit does not block on it)', () => {
  const ws = makeStore();
  try {
    const mk = spawnSync('mkfifo', [path.join(ws, 'pipe')]);
    assert.is(mk.status, 0, 'mkfifo');
    writeFileSync(path.join(ws, 'new.txt'), 'new');
    const r = run(ws, ['commit', '-m', 'with a fifo', '--json'], { timeoutMs: 30_000 });
    assert.is(r.code, 0, r.stderr);
    assert.match(r.stderr, /^mstore: warning: .*pipe/m);
    const files = (JSON.parse(ok(ws, ['show', 'v002', '--json'])) as { files: { path: string }[] }).files.map((f) => f.path);
    assert.ok(files.includes('new.txt'));
    assert.not.ok(files.includes('pipe'));
  } finally {
    cleanup(ws);
  }
});

test('commit (and log, status) outside a store: exit 1, the message says mstore init', () => {
  const dir = tmpDir('mstore-err-nostore-');
  try {
    // precondition: no .mstore/ in any parent, or the command would find that store
    for (let d = dir; ; d = path.dirname(d)) {
      assert.not.ok(existsSync(path.join(d, '.mstore', 'config.json')), `a store exists at ${d}; this test needs none above ${dir}`);
      if (path.dirname(d) === d) break;
    }
    writeFileSync(path.join(dir, 'file.txt'), 'x');
    expectError(mstore(dir, ['commit', '-m', 'x']), 1, /mstore init/, 'commit');
    expectError(mstore(dir, ['log']), 1, /mstore init/, 'log');
    expectError(mstore(dir, ['status']), 1, /mstore init/, 'status');
    assert.not.ok(existsSync(path.join(dir, '.mstore')), 'nothing created');
  } finally {
    cleanup(dir);
  }
});

test('an invalid .safetensors (> 1 MiB: truncated, garbage) is committed with a warning and round-trips byte for byte', () => {
  const ws = makeStore();
  const dest = tmpDir('mstore-err-out-');
  try {
    // 3 MiB valid file cut to 2.5 MiB: the header promises bytes that are not there
    const cut = path.join(ws, 'cut.safetensors');
    writeSafetensors(cut, layerTensors(1, 1024, 1536, 31));
    truncateSync(cut, 2.5 * 1024 * 1024);
    // 2 MiB that do not start with a sane header length
    const junk = path.join(ws, 'junk.safetensors');
    const buf = Buffer.alloc(2 * 1024 * 1024);
    for (let i = 0; i < buf.length; i++) buf[i] = (i * 2654435761) >>> 24;
    writeFileSync(junk, buf);
    const r = mstore(ws, ['commit', '-m', 'broken files', '--json']);
    assert.is(r.code, 0, r.stderr);
    const warnings = r.stderr.split('\n').filter(Boolean);
    assert.is(warnings.length, 2, r.stderr);
    assert.ok(warnings.some((l) => /^mstore: warning: cut\.safetensors is not valid safetensors/.test(l)), r.stderr);
    assert.ok(warnings.some((l) => /^mstore: warning: junk\.safetensors is not valid safetensors/.test(l)), r.stderr);
    assert.is((JSON.parse(r.stdout) as { version: string }).version, 'v002');
    const show = JSON.parse(ok(ws, ['show', 'v002', '--json'])) as { files: { path: string; kind: string; oid: string }[] };
    for (const f of ['cut.safetensors', 'junk.safetensors']) {
      const e = show.files.find((x) => x.path === f);
      assert.is(e?.kind, 'lfs');
      assert.is(e?.oid, sha256File(path.join(ws, f)));
    }
    ok(ws, ['checkout', 'v002', '--to', dest]);
    assert.equal(treeDigest(dest), treeDigest(ws));
  } finally {
    cleanup(ws);
    cleanup(dest);
  }
});

// ---------------------------------------------------------------------------------------
// damaged store

/** Offset and length of one chunk of `oid` in its pack, read from the pack's own table. */
function chunkOffsetInPack(ws: string, oid: string): { pack: string; offset: number; length: number } {
  const packsDir = path.join(ws, '.mstore', 'packs');
  for (const rel of walkFiles(packsDir).filter((p) => p.endsWith('.pack'))) {
    const file = path.join(packsDir, rel);
    const data = readFileSync(file);
    // layout (src/repo/pack.ts): magic 8 | entries | table (type u8, length u32, id 32)* | footer 44
    const count = data.readUInt32LE(data.length - 44 + 32);
    const tableStart = data.length - 44 - count * 37;
    const entries: { type: number; length: number; id: string; offset: number }[] = [];
    let off = 8;
    for (let i = 0; i < count; i++) {
      const o = tableStart + i * 37;
      const length = data.readUInt32LE(o + 1);
      entries.push({ type: data[o], length, id: data.subarray(o + 5, o + 37).toString('hex'), offset: off });
      off += length;
    }
    const manifest = entries.find((e) => e.type === 2 && e.id === oid);
    if (!manifest) continue;
    const records = data.subarray(manifest.offset, manifest.offset + manifest.length);
    const ids: string[] = [];
    for (let o = 0; o < records.length; o += 36) ids.push(records.subarray(o, o + 32).toString('hex'));
    assert.ok(ids.length >= 2, `${oid} has ${ids.length} chunks; the test wants several`);
    const middle = ids[Math.floor(ids.length / 2)];
    const chunk = entries.find((e) => e.type === 1 && e.id === middle);
    assert.ok(chunk, 'the middle chunk is in the same pack');
    return { pack: file, offset: chunk!.offset, length: chunk!.length };
  }
  throw new Error(`no pack holds the manifest of ${oid}`);
}

function flipByte(file: string, at: number): void {
  const fd = openSync(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, at);
    b[0] ^= 0xff;
    writeSync(fd, b, 0, 1, at);
  } finally {
    closeSync(fd);
  }
}

test('a damaged chunk: checkout exits 1 naming the file and leaves no partial file (new dir or workspace)', () => {
  const ws = makeStore();
  const out = tmpDir('mstore-err-out-');
  try {
    const show = JSON.parse(ok(ws, ['show', 'v001', '--json'])) as { files: { path: string; oid: string }[] };
    const big = show.files.find((f) => f.path === 'big.safetensors')!;
    const loc = chunkOffsetInPack(ws, big.oid);
    flipByte(loc.pack, loc.offset + Math.floor(loc.length / 2));
    const before = storeState(ws); // with the damage: the checkouts below must change nothing more

    const dest = path.join(out, 'dest');
    const r = mstore(ws, ['checkout', 'v001', '--to', dest]);
    expectError(r, 1, /big\.safetensors.*(damaged|hash)/, 'checkout --to of a damaged chunk');
    assert.not.ok(existsSync(path.join(dest, 'big.safetensors')), 'no file under the final name');
    assert.equal(temps(dest), [], 'no temporary left');
    assert.is(storeState(ws), before, 'refs, packs and log unchanged');

    // Into the workspace: the file there keeps its old bytes, never a partial new one.
    writeFileSync(path.join(ws, 'big.safetensors'), 'local edit');
    const r2 = mstore(ws, ['checkout', 'v001', '--force']);
    expectError(r2, 1, /big\.safetensors/, 'checkout --force of a damaged chunk');
    assert.is(readFileSync(path.join(ws, 'big.safetensors'), 'utf8'), 'local edit');
    assert.equal(temps(ws), [], 'no temporary left in the workspace');
    // the other, undamaged files still check out
    const small = path.join(out, 'small');
    ok(ws, ['checkout', 'v001', 'config.json', 'adapter', '--to', small]);
    assert.ok(existsSync(path.join(small, 'adapter', 'adapter_model.safetensors')));
  } finally {
    cleanup(ws);
    cleanup(out);
  }
});

// ---------------------------------------------------------------------------------------
// the writer lock

function sleeper(): Promise<ReturnType<typeof spawn>> {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 120000)'], { stdio: 'ignore' });
  return new Promise((resolve, reject) => {
    child.once('spawn', () => resolve(child));
    child.once('error', reject);
  });
}

test('a held lock: a second writer waits MSTORE_LOCK_TIMEOUT_MS and fails naming the lock; readers go on; a dead owner is taken over', async () => {
  const ws = makeStore();
  const out = tmpDir('mstore-err-out-');
  const child = await sleeper();
  try {
    const lockFile = path.join(ws, '.mstore', 'lock');
    const owner = { pid: child.pid, host: os.hostname(), since: new Date().toISOString(), command: 'commit' };
    writeFileSync(lockFile, JSON.stringify(owner));
    writeFileSync(path.join(ws, 'new.txt'), 'second writer');
    const env = { MSTORE_LOCK_TIMEOUT_MS: '500' };
    const before = storeState(ws);
    const r = run(ws, ['commit', '-m', 'second'], { env });
    const line = expectError(r, 1, /locked/, 'commit while locked');
    assert.ok(line.includes(lockFile), `names the lock file: ${line}`);
    assert.ok(line.includes(`pid ${child.pid}`), `names the owner: ${line}`);
    assert.ok(r.ms >= 450, `waited for the lock (${r.ms.toFixed(0)} ms)`);
    expectError(run(ws, ['checkout', 'v001', '--force'], { env }), 1, /locked/, 'checkout into the workspace while locked');
    assert.is(readFileSync(lockFile, 'utf8'), JSON.stringify(owner), 'the live owner keeps its lock');
    assert.is(storeState(ws), before);
    // readers do not need the lock
    assert.is(run(ws, ['log'], { env }).code, 0);
    assert.is(run(ws, ['status'], { env }).code, 0);
    assert.is(run(ws, ['checkout', 'v001', '--to', path.join(out, 'r')], { env }).code, 0);

    // The owner dies (kill -9): its lock is stale and the next writer takes it over.
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    const c = run(ws, ['commit', '-m', 'after the owner died', '--json'], { env });
    assert.is(c.code, 0, c.stderr);
    assert.is((JSON.parse(c.stdout) as { version: string }).version, 'v002');
    assert.not.ok(existsSync(lockFile), 'lock released');

    // A lock from another host is never presumed dead.
    writeFileSync(lockFile, JSON.stringify({ ...owner, pid: child.pid, host: `not-${os.hostname()}` }));
    writeFileSync(path.join(ws, 'new.txt'), 'third');
    expectError(run(ws, ['commit', '-m', 'third'], { env }), 1, /locked.*not-/, 'lock of another host');
    // A torn (empty) lock file: waited on while fresh, taken over once old.
    // Its time is set ahead so that it is still fresh (under 2 s old) when a slow start on a
    // loaded machine reads it.
    writeFileSync(lockFile, '');
    const fresh = new Date(Date.now() + 30_000);
    utimesSync(lockFile, fresh, fresh);
    expectError(run(ws, ['commit', '-m', 'third'], { env }), 1, /locked by another process.*lock/, 'fresh torn lock');
    const old = new Date(Date.now() - 60_000);
    utimesSync(lockFile, old, old);
    const c3 = run(ws, ['commit', '-m', 'third', '--json'], { env });
    assert.is(c3.code, 0, c3.stderr);
    assert.is((JSON.parse(c3.stdout) as { version: string }).version, 'v003');
  } finally {
    child.kill('SIGKILL');
    cleanup(ws);
    cleanup(out);
  }
});

// ---------------------------------------------------------------------------------------
// -C DIR

test('-C DIR works like git -C: as if started in DIR, relative paths included', () => {
  const ws = makeStore();
  const elsewhere = tmpDir('mstore-err-cwd-');
  try {
    const inside = ok(ws, ['log', '--json']);
    assert.is(ok(elsewhere, ['-C', ws, 'log', '--json']), inside);
    // relative DIR, resolved against the real cwd
    assert.is(ok(path.dirname(ws), ['-C', path.basename(ws), 'log', '--json']), inside);
    // path arguments and option files are relative to DIR
    mkdirSync(path.join(ws, 'sub'));
    writeFileSync(path.join(ws, 'sub', 'a.txt'), 'a');
    writeFileSync(path.join(ws, 'outside-sub.txt'), 'not committed');
    writeFileSync(path.join(ws, 'p.json'), '{"lr": 0.1}');
    const c = JSON.parse(ok(elsewhere, ['-C', ws, 'commit', 'sub', '-m', 'via -C', '--params', 'p.json', '--json'])) as {
      version: string;
      added: string[];
    };
    assert.is(c.version, 'v002');
    assert.equal(c.added, ['sub/a.txt']);
    const meta = JSON.parse(ok(ws, ['show', 'v002', '--json'])) as { meta: { params: { lr: number } } };
    assert.is(meta.meta.params.lr, 0.1);
    // checkout --to relative to DIR
    ok(elsewhere, ['-C', ws, 'checkout', 'v002', '--to', 'copy']);
    assert.is(readFileSync(path.join(ws, 'copy', 'sub', 'a.txt'), 'utf8'), 'a');
    // init through -C
    const fresh = path.join(elsewhere, 'fresh');
    mkdirSync(fresh);
    ok(elsewhere, ['-C', 'fresh', 'init']);
    assert.ok(existsSync(path.join(fresh, '.mstore', 'config.json')));
    // a directory that does not exist
    expectError(mstore(elsewhere, ['-C', path.join(elsewhere, 'nope'), 'log']), 2, /cannot change to directory '.*\/nope'/, '-C to a missing directory');
  } finally {
    cleanup(ws);
    cleanup(elsewhere);
  }
});

// ---------------------------------------------------------------------------------------
// hostile version trees (as a store pulled from elsewhere could hold): built with real git
// plumbing. git 2.39's mktree accepts '..' and duplicate names, so all of these are
// constructible; the store's own fsck would reject them, checkout must not trust them.

function hostileVersion(ws: string, name: string, entries: string): void {
  const gitdir = path.join(ws, '.mstore', 'git');
  const tree = gitRun(gitdir, ['mktree'], entries);
  const commit = gitRun(gitdir, ['commit-tree', tree, '-m', name]);
  gitRun(gitdir, ['update-ref', `refs/tags/${name}`, commit]);
}

test('hostile trees: "..", ".git" and "/" components never write outside the target', () => {
  const ws = makeStore();
  const out = tmpDir('mstore-err-out-');
  try {
    const gitdir = path.join(ws, '.mstore', 'git');
    const evil = gitRun(gitdir, ['hash-object', '-w', '--stdin'], 'evil\n');
    const sub = gitRun(gitdir, ['mktree'], `100644 blob ${evil}\tevil\n`);
    hostileVersion(ws, 'dotdot', `040000 tree ${sub}\t..\n100644 blob ${evil}\tok.txt\n`);
    hostileVersion(ws, 'dotgit', `040000 tree ${sub}\t.git\n`);
    hostileVersion(ws, 'dotdotfile', `100644 blob ${evil}\t..\n`);
    for (const rev of ['dotdot', 'dotgit', 'dotdotfile']) {
      const base = path.join(out, rev);
      mkdirSync(base);
      const dest = path.join(base, 'dest');
      const r = mstore(ws, ['checkout', rev, '--to', dest]);
      expectError(r, 1, /unsafe|\.\.|cannot hold/, `checkout ${rev}`);
      assert.not.ok(existsSync(path.join(base, 'evil')), `${rev}: nothing written next to the target`);
      assert.not.ok(existsSync(path.join(dest, '.git')), `${rev}: no .git inside the target`);
      assert.equal(walkFiles(base).filter((p) => !p.startsWith('dest/')), [], `${rev}: nothing outside the target`);
    }
    // into the workspace too
    const r = mstore(ws, ['checkout', 'dotdot', '--force']);
    expectError(r, 1, /unsafe|\.\./, 'checkout dotdot into the workspace');
    assert.not.ok(existsSync(path.join(path.dirname(ws), 'evil')));
  } finally {
    cleanup(ws);
    cleanup(out);
  }
});

// Regression: a tree with a symlink `link` -> DIR outside the target and a file `link/evil`
// (two entries named `link`, which git mktree accepts) used to make checkout create the
// symlink, then write through it. Such trees are now refused, and parents re-checked per write.
test('hostile tree: a path through a symlink the same version creates never writes outside the target', () => {
  const ws = makeStore();
  const out = tmpDir('mstore-err-out-');
  const outside = tmpDir('mstore-err-outside-');
  try {
    const gitdir = path.join(ws, '.mstore', 'git');
    const evil = gitRun(gitdir, ['hash-object', '-w', '--stdin'], 'evil\n');
    const target = gitRun(gitdir, ['hash-object', '-w', '--stdin'], outside);
    const sub = gitRun(gitdir, ['mktree'], `100644 blob ${evil}\tevil\n`);
    hostileVersion(ws, 'through-link', `120000 blob ${target}\tlink\n040000 tree ${sub}\tlink\n`);
    const dest = path.join(out, 'dest');
    expectError(mstore(ws, ['checkout', 'through-link', '--to', dest]), 1, /link/, 'checkout through-link');
    assert.equal(readdirSync(outside), [], `checkout wrote ${readdirSync(outside).join(', ')} into ${outside}, outside ${dest}`);

    // A symlink already in the target where a valid version has a directory: never followed.
    hostileVersion(ws, 'plain-dir', `040000 tree ${sub}\tlink\n`);
    const dest2 = path.join(out, 'dest2');
    mkdirSync(dest2);
    symlinkSync(outside, path.join(dest2, 'link'));
    const r = mstore(ws, ['checkout', 'plain-dir', '--to', dest2]);
    expectError(r, 1, /link.*symlink/, 'checkout over a symlinked parent');
    assert.equal(readdirSync(outside), [], `checkout wrote ${readdirSync(outside).join(', ')} through the symlink ${dest2}/link`);
    // --force replaces the symlink by a directory; it still writes nothing through it
    const r2 = mstore(ws, ['checkout', 'plain-dir', '--to', dest2, '--force']);
    assert.is(r2.code, 0, r2.stderr);
    assert.equal(readdirSync(outside), [], `checkout --force wrote ${readdirSync(outside).join(', ')} through the symlink ${dest2}/link`);
    assert.ok(lstatSync(path.join(dest2, 'link')).isDirectory(), 'the symlink was replaced by a directory');
    assert.is(readFileSync(path.join(dest2, 'link', 'evil'), 'utf8'), 'evil\n');
  } finally {
    cleanup(ws);
    cleanup(out);
    cleanup(outside);
  }
});

test('a removed version: its name says how to get it back; tag -d of a version points to rm', () => {
  const ws = makeStore();
  try {
    ok(ws, ['rm', 'v001', '--confirm', '--no-backup']);
    const before = storeState(ws);
    expectError(mstore(ws, ['show', 'v001']), 1, /unknown revision 'v001': v001 was removed by rm at .*mstore restore v001/, 'show v001');
    expectError(mstore(ws, ['checkout', 'v001~0', '--to', path.join(ws, 'o')]), 1, /mstore restore v001/, 'checkout v001~0');
    expectError(mstore(ws, ['tag', '-d', 'v001']), 2, /'v001' is a version, not a tag: remove it with 'mstore rm v001'/, 'tag -d v001');
    assert.is(storeState(ws), before);
    ok(ws, ['restore', 'v001']);
    ok(ws, ['show', 'v001']);
  } finally {
    cleanup(ws);
  }
});

// ---------------------------------------------------------------------------------------
// error codes: not found vs unknown revision, and the exit status of each code

test('exit statuses: EUSAGE and EBADNAME exit 2, every other code and any non-mstore error 1', () => {
  for (const code of ERROR_CODES) {
    const want = code === 'EUSAGE' || code === 'EBADNAME' ? 2 : 1;
    assert.is(exitStatusOf(code), want, code);
    assert.is(exitStatus(new MstoreError(code, 'x')), want, `${code} as an error`);
  }
  assert.is(exitStatus(new Error('a bug')), 1);
  assert.is(exitStatus(Object.assign(new Error('EACCES'), { code: 'EACCES' })), 1);
  assert.is(exitStatus('thrown string'), 1);
});

test('a named thing that does not exist: exit 1 naming it (not-found), store unchanged', () => {
  const ws = makeStore();
  const other = makeStore(); // an mstore store without deploy.json
  try {
    const before = storeState(ws);
    expectError(mstore(ws, ['push', 'nosuch']), 1, /no remote named 'nosuch'/, 'push nosuch');
    expectError(mstore(ws, ['remote', 'remove', 'nosuch']), 1, /no remote named 'nosuch'/, 'remote remove nosuch');
    expectError(mstore(ws, ['backup', 'restore', 'nosuch', 'v001']), 1, /no backup store named 'nosuch'/, 'backup restore nosuch');
    expectError(mstore(ws, ['backup']), 1, /no backup store is configured/, 'backup without a backup store');
    expectError(mstore(ws, ['label', 'v001', '--unset', 'nolabel']), 1, /v001 has no label 'nolabel'/, 'label --unset nolabel');
    expectError(mstore(ws, ['tag', '-d', 'nosuch']), 1, /tag 'nosuch' not found/, 'tag -d nosuch');
    expectError(mstore(ws, ['restore', 'nosuch']), 1, /no deletion of 'nosuch'/, 'restore nosuch');
    expectError(mstore(ws, ['deploy', 'status', other]), 1, /has no deploy configuration/, 'deploy status of a store without deploy.json');
    expectError(mstore(ws, ['deploy', 'rollback', other]), 1, /has no deploy configuration/, 'deploy rollback');
    assert.is(storeState(ws), before);
  } finally {
    cleanup(ws);
    cleanup(other);
  }
});

test('usage: bad option values and names exit 2 (EUSAGE, EBADNAME), store unchanged', () => {
  const ws = makeStore();
  try {
    const before = storeState(ws);
    expectError(mstore(ws, ['remote', 'add', 'bad name', '/tmp/x']), 2, /invalid remote name 'bad name'/, 'remote add "bad name"');
    expectError(mstore(ws, ['remote', 'add', 'box', 'ftp://box/x']), 2, /unsupported remote URL scheme/, 'remote add ftp://');
    expectError(mstore(ws, ['remote', 'frob']), 2, /unknown remote subcommand 'frob'/, 'remote frob');
    expectError(mstore(ws, ['backup', 'add', 'self', ws]), 2, /own backup/, 'backup add of the store itself');
    expectError(mstore(ws, ['label', 'v001', 'bad key=1']), 2, /invalid label name 'bad key'/, 'label "bad key=1"');
    expectError(mstore(ws, ['label', 'v001', 'status=bogus']), 2, /invalid status 'bogus'/, 'label status=bogus');
    expectError(mstore(ws, ['prune']), 2, /empty policy/, 'prune without a policy');
    expectError(mstore(ws, ['prune', '--keep-within', '3x']), 2, /--keep-within '3x'/, 'prune --keep-within 3x');
    assert.is(storeState(ws), before);
  } finally {
    cleanup(ws);
  }
});

/** Awaits `p`, which must reject with an MstoreError of `code`; returns the error for its fields. */
async function rejectsWith(p: Promise<unknown>, code: ErrorCode, what: string): Promise<MstoreError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof MstoreError, `${what}: an MstoreError, got ${String(e)}`);
    assert.is(e.code, code, `${what}: code (${e.message})`);
    return e;
  }
  assert.unreachable(`${what}: did not fail`);
  throw new Error('unreachable');
}

test('library codes: ENOTFOUND for remotes, backup stores, labels, tags, files, deploys; EUNKNOWNREV for revisions, with what and where', async () => {
  const ws = makeStore();
  const other = makeStore();
  const store = await Store.find(ws);
  try {
    let e = await rejectsWith(openRemote(store, 'nosuch'), 'ENOTFOUND', 'openRemote');
    assert.is(e.what, 'nosuch');
    await rejectsWith(removeRemote(store, 'nosuch'), 'ENOTFOUND', 'removeRemote');
    e = await rejectsWith(chooseBackup(store, 'nosuch'), 'ENOTFOUND', 'chooseBackup');
    assert.is(e.what, 'nosuch');
    await rejectsWith(backup(store, {}), 'ENOTFOUND', 'backup with none configured');
    e = await rejectsWith(setLabels(store, 'v001', {}, ['nolabel']), 'ENOTFOUND', 'unset a label');
    assert.equal([e.what, e.where], ['nolabel', 'v001']);
    e = await rejectsWith(deleteTag(store, 'nosuch'), 'ENOTFOUND', 'deleteTag');
    assert.is(e.what, 'nosuch');
    e = await rejectsWith(restoreRef(store, 'nosuch'), 'ENOTFOUND', 'restoreRef');
    assert.is(e.what, 'nosuch');
    const side = await versionSide(store, 'v001');
    try {
      e = await rejectsWith(side.readAll('no/such.bin'), 'ENOTFOUND', 'a file the version lacks');
      assert.equal([e.what, e.where], ['no/such.bin', 'v001']);
    } finally {
      await side.close();
    }
    const remote = await openUrl(other);
    try {
      await rejectsWith(remoteDeployStatus(remote), 'ENOTFOUND', 'deploy status without deploy.json');
      e = await rejectsWith(pull(store, remote, { refs: ['v042'] }), 'EUNKNOWNREV', 'pull of a ref the remote lacks');
      assert.equal([e.what, e.where], ['v042', remote.display]);
    } finally {
      await remote.close();
    }
    // An unknown revision names the part that resolves to nothing, and no place (this store).
    e = await rejectsWith(resolveRev(store.repo, 'v042~2'), 'EUNKNOWNREV', 'resolveRev v042~2');
    assert.equal([e.what, e.where], ['v042', undefined]);
    e = await rejectsWith(resolveRev(store.repo, 'v001~5'), 'EUNKNOWNREV', 'resolveRev v001~5');
    assert.is(e.what, 'v001~5');
  } finally {
    await store.close();
    cleanup(ws);
    cleanup(other);
  }
});

test.run();
