/**
 * A long history (issue 15, acceptance 6), not timed: 300 versions of the daily-training shape
 * (test/history-store.ts; one more evolution/*.json per version), built in-process. What the
 * fast paths say — records packed into git packs, the record cache, the ref table — is checked
 * against real git and against mstore reading git with its caches removed; a push and a clone
 * of the whole history give the same answers; and damage under a cached record is still found
 * (the cache's proof can fail).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { closeSync, cpSync, openSync, writeFileSync, readFileSync, readSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { buildHistory } from './history-store.js';
import { cleanup, git, mstore, spawnMstore, tmpDir, type RunResult } from './helpers.js';

const VERSIONS = 300;

interface LogJson {
  version: string;
  commit: string;
  tags: string[];
  meta: { version: string; files: { count: number; bytes: number } };
}

function ok(r: RunResult, what: string): string {
  assert.is(r.code, 0, `${what}: exit ${r.code}: ${r.stderr}`);
  return r.stdout;
}

function logOf(dir: string): LogJson[] {
  const r = mstore(dir, ['log', '--json']);
  assert.ok(ok(r, `log in ${dir}`).trim(), `log --json in ${dir} printed nothing (stderr: ${r.stderr})`);
  return JSON.parse(r.stdout) as LogJson[];
}

let ws = '';
let other = '';

test.before(async () => {
  ws = tmpDir('mstore-history-');
  other = tmpDir('mstore-history-other-');
  await buildHistory(ws, { versions: VERSIONS, adapterKiB: 16 });
});

test.after(() => {
  cleanup(ws);
  cleanup(other);
});

test('the records are packed into git packs that real git reads', () => {
  const gitdir = path.join(ws, '.mstore', 'git');
  const idx = readdirSync(path.join(gitdir, 'objects', 'pack')).filter((n) => n.endsWith('.idx'));
  assert.ok(idx.length >= 1, 'at least one git pack');
  for (const n of idx) ok(git(gitdir, ['verify-pack', path.join(gitdir, 'objects', 'pack', n)]), `git verify-pack ${n}`);
  ok(git(gitdir, ['fsck', '--strict']), 'git fsck --strict');
  const count = ok(git(gitdir, ['count-objects', '-v']), 'git count-objects');
  // Packed once a writer sees ~512 loose ones (estimated from 16 fan-out folders, as git estimates from one).
  const loose = Number(/^count: (\d+)/m.exec(count)![1]);
  assert.ok(loose < 1024 && loose < Number(/^in-pack: (\d+)/m.exec(count)![1]), `most objects packed:\n${count}`);
});

test('log and tag --list: the same with the caches as without them, and what git says', () => {
  const gitdir = path.join(ws, '.mstore', 'git');
  const cached = ok(mstore(ws, ['log', '--json']), 'log (cached)');
  const tagsCached = ok(mstore(ws, ['tag', '--list', '--json']), 'tag --list (cached)');
  const page = ok(mstore(ws, ['log', '-n', '20', '--json']), 'log -n 20');
  rmSync(path.join(ws, '.mstore', 'cache'), { recursive: true, force: true });
  const fromGit = ok(mstore(ws, ['log', '--json']), 'log (from git)');
  if (fromGit !== cached && process.env.MSTORE_TEST_DEBUG) {
    writeFileSync(path.join(process.env.MSTORE_TEST_DEBUG, 'cached.json'), cached);
    writeFileSync(path.join(process.env.MSTORE_TEST_DEBUG, 'git.json'), fromGit);
  }
  assert.ok(fromGit === cached, 'log: the caches change nothing');
  assert.is(ok(mstore(ws, ['tag', '--list', '--json']), 'tag --list (from git)'), tagsCached, 'tag --list: the caches change nothing');
  const entries = JSON.parse(cached) as LogJson[];
  assert.equal(JSON.parse(page), entries.slice(0, 20), 'log -n 20 is the first page of log');
  assert.is(entries.length, VERSIONS);
  assert.equal(
    entries.map((e) => e.commit),
    ok(git(gitdir, ['rev-list', '--first-parent', 'latest']), 'git rev-list').trim().split('\n'),
    'the versions in the order git walks them',
  );
  for (const n of [1, 77, 150, 299, 300]) {
    const name = `v${String(n).padStart(3, '0')}`;
    const e = entries.find((x) => x.version === name)!;
    assert.is(e.commit, ok(git(gitdir, ['rev-parse', `${name}^{commit}`]), 'git rev-parse').trim(), `${name}: its commit`);
    assert.equal(e.meta, JSON.parse(ok(git(gitdir, ['show', `${name}:.mstore/version.json`]), 'git show')), `${name}: its record`);
  }
  // A writer makes the caches again; the answers stay the same.
  ok(mstore(ws, ['tag', 'probe', 'v100']), 'tag');
  ok(mstore(ws, ['tag', '-d', 'probe']), 'tag -d');
  assert.is(ok(mstore(ws, ['log', '--json']), 'log (caches made again)'), cached);
});

test('log --json into a pipe read late: every byte arrives (an exit before the flush cut it at 64 KiB)', async () => {
  const child = spawnMstore(ws, ['log', '--json']);
  child.stdout!.pause();
  await new Promise((r) => setTimeout(r, 700));
  const parts: Buffer[] = [];
  child.stdout!.on('data', (d: Buffer) => parts.push(d));
  child.stdout!.resume();
  const code = await new Promise<number | null>((r) => child.on('close', r));
  assert.is(code, 0);
  const text = Buffer.concat(parts).toString('utf8');
  assert.ok(text.length > 65536, `more than a pipe's 64 KiB (${text.length} bytes)`);
  assert.is((JSON.parse(text) as unknown[]).length, VERSIONS);
});

test('verify and fsck: every version, no problems', () => {
  const quick = JSON.parse(ok(mstore(ws, ['verify', '--all', '--quick', '--json']), 'verify --quick')) as { ok: boolean; versions: unknown[] };
  assert.ok(quick.ok);
  assert.is(quick.versions.length, VERSIONS);
  const full = JSON.parse(ok(mstore(ws, ['verify', '--all', '--json']), 'verify')) as { ok: boolean; versions: unknown[] };
  assert.ok(full.ok);
  assert.is(full.versions.length, VERSIONS);
  const fsck = JSON.parse(ok(mstore(ws, ['fsck', '--json']), 'fsck')) as { ok: boolean; problems: string[] };
  assert.equal(fsck.problems, []);
});

test('push and clone of the whole history give the same log', () => {
  const source = logOf(ws);
  const remote = path.join(other, 'remote');
  ok(mstore(other, ['init', '--bare', 'remote']), 'init --bare');
  ok(mstore(ws, ['push', remote]), 'push');
  const pushed = logOf(remote);
  assert.equal(pushed, source, 'the remote lists the same versions');
  ok(git(path.join(remote, 'git'), ['fsck', '--strict']), 'git fsck --strict on the remote');
  ok(mstore(other, ['clone', remote, 'clone']), 'clone');
  assert.equal(logOf(path.join(other, 'clone')), source, 'the clone lists the same versions');
  assert.ok(readFileSync(path.join(other, 'clone', 'adapter_model.safetensors')).equals(readFileSync(path.join(ws, 'adapter_model.safetensors'))), 'the clone checks out latest');
  assert.is(readdirSync(path.join(other, 'clone', 'evolution')).length, VERSIONS);
  // One more version: only it travels.
  ok(mstore(ws, ['commit', '-m', 'one more', '--allow-empty']), 'commit');
  const again = JSON.parse(ok(mstore(ws, ['push', remote, '--json']), 'push one more')) as { gitObjectsSent: number };
  assert.ok(again.gitObjectsSent <= 6, `one version's records travel (${again.gitObjectsSent} objects)`);
});

test('after real git gc (delta-compressed packs, packed-refs): the same answers', () => {
  const copy = path.join(other, 'gitgc');
  cpSync(ws, copy, { recursive: true });
  const before = ok(mstore(copy, ['log', '--json']), 'log');
  const gitdir = path.join(copy, '.mstore', 'git');
  ok(git(gitdir, ['gc', '--aggressive', '--quiet']), 'git gc');
  const packs = readdirSync(path.join(gitdir, 'objects', 'pack')).filter((n) => n.endsWith('.idx'));
  const listed = ok(git(gitdir, ['verify-pack', '-v', path.join(gitdir, 'objects', 'pack', packs[0])]), 'verify-pack -v');
  assert.match(listed, /^[0-9a-f]{40} (tree|blob) +\d+ \d+ \d+ \d+ [0-9a-f]{40}$/m, 'git gc made deltas');
  assert.ok(readFileSync(path.join(gitdir, 'packed-refs'), 'utf8').includes('refs/tags/v150'), 'and packed the refs');
  assert.is(ok(mstore(copy, ['log', '--json']), 'log after git gc'), before, 'log reads deltas and packed-refs');
  assert.ok((JSON.parse(ok(mstore(copy, ['verify', '--all', '--quick', '--json']), 'verify --quick')) as { ok: boolean }).ok);
  assert.equal((JSON.parse(ok(mstore(copy, ['fsck', '--json']), 'fsck')) as { problems: string[] }).problems, []);
  ok(mstore(copy, ['tag', 'after-gc', 'v150']), 'a writer after git gc');
  assert.match(ok(mstore(copy, ['tag', '--list']), 'tag --list'), /^after-gc +/m);
});

test('damage inside a packed record is found although the record is cached', () => {
  const copy = path.join(other, 'damaged');
  cpSync(ws, copy, { recursive: true });
  const gitdir = path.join(copy, '.mstore', 'git');
  const blob = ok(git(gitdir, ['rev-parse', 'v150:.mstore/version.json']), 'rev-parse').trim();
  const packDir = path.join(gitdir, 'objects', 'pack');
  let hit: { pack: string; offset: number; end: number } | undefined;
  for (const n of readdirSync(packDir).filter((x) => x.endsWith('.idx'))) {
    const shown = spawnSync('git', ['show-index'], { input: readFileSync(path.join(packDir, n)), encoding: 'utf8' });
    const lines = ok({ code: shown.status ?? -1, stdout: shown.stdout, stderr: shown.stderr }, 'git show-index').trim().split('\n');
    const rows = lines.map((l) => l.split(' ')).map(([off, id]) => ({ off: Number(off), id })).sort((a, b) => a.off - b.off);
    const i = rows.findIndex((r) => r.id === blob);
    if (i < 0) continue;
    const packFile = path.join(packDir, n.replace(/\.idx$/, '.pack'));
    const end = i + 1 < rows.length ? rows[i + 1].off : readFileSync(packFile).length - 20;
    hit = { pack: packFile, offset: rows[i].off, end };
  }
  assert.ok(hit, 'v150 version.json is packed');
  // Flip a byte in the middle of its compressed bytes.
  const at = Math.floor((hit!.offset + hit!.end) / 2);
  const fd = openSync(hit!.pack, 'r+');
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, at);
  b[0] ^= 0x5a;
  writeSync(fd, b, 0, 1, at);
  closeSync(fd);
  const log = mstore(copy, ['log']);
  assert.is(log.code, 1, `log reports the damaged record: ${log.stdout}`);
  assert.match(log.stderr, new RegExp(`v150.*${blob}|${blob}.*v150`), 'the problem names the version and the object');
  assert.not.match(log.stdout, /^v150 /m, 'v150 is not listed as if whole');
  assert.match(log.stdout, /^v149 /m, 'the others are listed');
  const verify = mstore(copy, ['verify', '--all', '--quick']);
  assert.is(verify.code, 1, 'verify --quick finds it');
  const fsck = mstore(copy, ['fsck']);
  assert.is(fsck.code, 1, 'fsck finds it');
  assert.match(fsck.stdout + fsck.stderr, /pack-[0-9a-f]{40}\.pack is damaged/, 'fsck names the git pack');
});

test('damaged caches: torn, garbage and contradicting lines change no answer', () => {
  const copy = path.join(other, 'caches');
  cpSync(ws, copy, { recursive: true });
  const plain = path.join(other, 'no-caches');
  cpSync(ws, plain, { recursive: true });
  rmSync(path.join(plain, '.mstore', 'cache'), { recursive: true, force: true });
  const answers = (dir: string): string[] =>
    [['log', '--json'], ['log', '-n', '5', '--json'], ['tag', '--list', '--json'], ['show', 'v150', '--json']].map((a) => ok(mstore(dir, a), `${a.join(' ')} in ${dir}`));
  const expected = answers(plain);
  const records = path.join(copy, '.mstore', 'cache', 'records');
  const latest = ok(git(path.join(copy, '.mstore', 'git'), ['rev-parse', 'latest']), 'rev-parse latest').trim();
  const text = readFileSync(records, 'latin1');
  const line = text.split('\n').find((l) => l.startsWith(`c${latest} `))!;
  assert.ok(line, 'the newest version is cached');
  // Newest lines first for a search from the end: one whose CRC does not hold (a lying
  // description), a torn copy of the real one, and garbage.
  const lying = line.replace(/"description":"[^"]*"/, '"description":"not what the record says"');
  assert.is.not(lying, line);
  writeFileSync(records, `${text}${lying}\n${line.slice(0, 60)}\n\u0000garbage\n${'c'.repeat(41)} zz\n`, 'latin1');
  assert.equal(answers(copy), expected, 'a damaged record cache changes nothing');
  // The ref table: the earlier form (refs as an object), current by its stamps but naming no
  // refs at all; then garbage.
  const refs = path.join(copy, '.mstore', 'cache', 'refs');
  const snap = JSON.parse(readFileSync(refs, 'utf8')) as { journal: number; stamps: unknown; refPairs?: unknown };
  assert.ok(Array.isArray(snap.refPairs), 'the ref table holds pairs');
  writeFileSync(refs, JSON.stringify({ journal: snap.journal, stamps: snap.stamps, refs: {}, peeled: {} }));
  assert.equal(answers(copy), expected, 'a ref table in the earlier form is not used');
  writeFileSync(refs, '{"journal":');
  assert.equal(answers(copy), expected, 'a torn ref table changes nothing');
  rmSync(records);
  writeFileSync(refs, 'not json at all');
  assert.equal(answers(copy), expected, 'no record cache and a garbage ref table change nothing');
});

test.run();
