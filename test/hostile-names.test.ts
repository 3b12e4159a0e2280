/**
 * Hostile names (issue 20, items 2 and 3), through the real CLI: file names of 255 bytes
 * commit, check out (in place and with --to), verify and export; names a version cannot hold
 * (docs/format.md §7.9) are refused by commit and by a files-layout import with one line naming
 * the file and the rule and the store unchanged; a store that already holds such a tree (made
 * with real git plumbing) still logs, shows and checks out everything else, naming the entry.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, symlinkSync, unlinkSync, writeFileSync, readFileSync } from 'node:fs';
import { cleanup, mstore, tmpDir, treeDigest, type RunResult } from './helpers.js';
import { expectRefusal, refusedUnchanged, storeBytes } from './hostile-helpers.js';

function ok(cwd: string, args: string[]): RunResult {
  const r = mstore(cwd, args);
  assert.is(r.code, 0, `mstore ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r;
}

/** A workspace with v001: a text file, a binary file (lfs) and a symlink. */
function workspace(): string {
  const ws = tmpDir('mstore-names-');
  ok(ws, ['init']);
  writeFileSync(path.join(ws, 'config.json'), '{"hidden_size": 64}\n');
  writeFileSync(path.join(ws, 'model.bin'), Buffer.alloc(70_000, 7));
  symlinkSync('model.bin', path.join(ws, 'latest.bin'));
  ok(ws, ['commit', '-m', 'first']);
  return ws;
}

// ---------------------------------------------------------------------------------------
// #20.3 long names

test('names of 255 bytes (ASCII, 2-byte and 3-byte UTF-8) commit, check out in place and with --to, verify and export', () => {
  const ws = workspace();
  try {
    const ascii = `${'a'.repeat(250)}.json`;
    const two = `${'é'.repeat(125)}x.bin`;
    const three = `${'模'.repeat(83)}ab.txt`;
    const link = 'l'.repeat(255);
    const dir = 'd'.repeat(255);
    for (const n of [ascii, two, three, link, dir]) assert.is(Buffer.byteLength(n), 255, n);
    writeFileSync(path.join(ws, ascii), '{"long": true}\n');
    writeFileSync(path.join(ws, two), Buffer.alloc(50_000, 3));
    writeFileSync(path.join(ws, three), 'text\n');
    symlinkSync('config.json', path.join(ws, link));
    mkdirSync(path.join(ws, dir));
    writeFileSync(path.join(ws, dir, two), Buffer.alloc(40_000, 4));
    ok(ws, ['commit', '-m', 'long names']);
    const want = treeDigest(ws);

    // In place: every long-named file gone, then checked out again; one modified, forced back.
    for (const n of [ascii, two, three, link]) unlinkSync(path.join(ws, n));
    rmSync(path.join(ws, dir), { recursive: true });
    const co = mstore(ws, ['checkout', 'v002']);
    assert.is(co.code, 0, `checkout v002 in place: ${co.stderr}`);
    assert.equal(treeDigest(ws), want, 'in place: the files are back byte for byte');
    writeFileSync(path.join(ws, two), 'changed');
    const forced = mstore(ws, ['checkout', 'v002', '--force']);
    assert.is(forced.code, 0, `checkout v002 --force: ${forced.stderr}`);
    assert.equal(treeDigest(ws), want, 'forced: the files are back byte for byte');

    const out = tmpDir('mstore-names-out-');
    try {
      const to = mstore(ws, ['checkout', 'v002', '--to', path.join(out, 'o')]);
      assert.is(to.code, 0, `checkout v002 --to: ${to.stderr}`);
      assert.equal(treeDigest(path.join(out, 'o')), want, '--to: byte for byte');
      const v = mstore(ws, ['verify', 'v002']);
      assert.is(v.code, 0, `verify v002: ${v.stdout}${v.stderr}`);
      // The export's temporary name is made from its output name too.
      const tarName = `${'e'.repeat(251)}.tar`;
      const ex = mstore(ws, ['export', 'v002', '-o', path.join(out, tarName), '--format', 'files']);
      assert.is(ex.code, 0, `export to a 255-byte name: ${ex.stderr}`);
    } finally {
      cleanup(out);
    }
  } finally {
    cleanup(ws);
  }
});

// ---------------------------------------------------------------------------------------
// #20.2 names a version cannot hold: refused at commit

/** Each: the path to create (a file, or a symlink to 'model.bin'), and what the line must say. */
const COMMIT_CASES: { name: string; link?: boolean; re: RegExp }[] = [
  { name: 'a\\b.txt', re: /'a\\\\b\.txt'.*backslash/ },
  { name: '.GIT/config', re: /'\.GIT\/config'.*\.git/ },
  { name: 'sub/.Git', re: /'sub\/\.Git'.*\.git/ },
  { name: 'git~1/HEAD', re: /'git~1\/HEAD'.*\.git/ },
  { name: '.g\u200cit/x.json', re: /'\.g\\u\{200c\}it\/x\.json'.*\.git/ },
  { name: '.git\ufeff', re: /'\.git\\u\{feff\}'.*\.git/ },
  { name: '.git. ', re: /'\.git\. '.*\.git/ },
  { name: '.git::$INDEX_ALLOCATION/x', re: /\.git::\$INDEX_ALLOCATION.*\.git/ },
  { name: '.MStore/version.json', re: /'\.MStore\/version\.json'.*reserved/ },
  { name: 'new\nline.txt', re: /'new\\nline\.txt'.*control character/ },
  { name: '.gitmodules', link: true, re: /'\.gitmodules'.*symlink/ },
];

test('commit refuses every name a version cannot hold: one line naming the file and the rule, exit 1, the store unchanged', () => {
  const ws = workspace();
  try {
    for (const c of COMMIT_CASES) {
      const abs = path.join(ws, c.name);
      mkdirSync(path.dirname(abs), { recursive: true });
      if (c.link) symlinkSync('model.bin', abs);
      else writeFileSync(abs, 'x\n');
      refusedUnchanged(ws, ['v001'], `commit with ${JSON.stringify(c.name)}`, 1, c.re, () => mstore(ws, ['commit', '-m', 'bad name']));
      rmSync(path.join(ws, c.name.split('/')[0]), { recursive: true, force: true });
    }
    // A name that is not UTF-8 cannot be recorded either (tree names are UTF-8 text to mstore).
    const raw = Buffer.concat([Buffer.from(ws + '/f'), Buffer.from([0xff, 0xfe]), Buffer.from('.bin')]);
    writeFileSync(raw, 'x');
    refusedUnchanged(ws, ['v001'], 'commit with a non-UTF-8 name', 1, /not valid UTF-8/, () => mstore(ws, ['commit', '-m', 'bad name']));
    unlinkSync(raw);
    // Ignored names are not versioned, so not refused; the store takes the next commit.
    writeFileSync(path.join(ws, '.mstoreignore'), 'scratch/\n');
    mkdirSync(path.join(ws, 'scratch', '.GIT'), { recursive: true });
    writeFileSync(path.join(ws, 'scratch', '.GIT', 'x'), 'x');
    writeFileSync(path.join(ws, 'config.json'), '{"hidden_size": 65}\n');
    ok(ws, ['commit', '-m', 'fine']);
  } finally {
    cleanup(ws);
  }
});

// ---------------------------------------------------------------------------------------
// #20.2 ... and at a files-layout import

const META = JSON.stringify({ schema: 'mstore.version/1', description: 'hostile', line: 'main' });

/** A files-layout tar of one version directory v001/ holding `names` (GNU tar; `rename` maps a name after it is archived). */
function filesTar(dir: string, names: string[], rename?: [string, string]): string {
  const src = path.join(dir, 'src');
  mkdirSync(path.join(src, 'v001', '.mstore'), { recursive: true });
  writeFileSync(path.join(src, 'v001', '.mstore', 'version.json'), META);
  writeFileSync(path.join(src, 'v001', 'config.json'), '{}\n');
  for (const n of names) {
    mkdirSync(path.dirname(path.join(src, 'v001', n)), { recursive: true });
    writeFileSync(path.join(src, 'v001', n), 'x\n');
  }
  const tar = path.join(dir, 'in.tar');
  const args = ['-cf', tar, '-C', src, '--format=gnu', ...(rename ? ['--transform', `s/${rename[0]}/${rename[1]}/`] : []), 'v001'];
  const r = spawnSync('tar', args, { encoding: 'utf8' });
  assert.is(r.status, 0, `tar: ${r.stderr}`);
  rmSync(src, { recursive: true });
  return tar;
}

test('a files-layout import refuses names a version cannot hold before anything is written', () => {
  const ws = workspace();
  const dir = tmpDir('mstore-names-tar-');
  try {
    const cases: { names: string[]; rename?: [string, string]; re: RegExp; what: string }[] = [
      { names: ['.GIT/config'], re: /'v001\/\.GIT\/config'.*\.git/, what: '.GIT' },
      { names: ['a\\b.txt'], re: /'v001\/a\\\\b\.txt'.*backslash/, what: 'a backslash' },
      { names: ['sub/.g\u200dit/hooks/x'], re: /'v001\/sub\/\.g\\u\{200d\}it\/hooks\/x'.*\.git/, what: 'ignorable Unicode' },
      { names: ['LONGNAME.bin'], rename: ['LONGNAME', 'n'.repeat(256)], re: /255 bytes/, what: 'a 256-byte name' },
      { names: ['git~1'], re: /'v001\/git~1'.*\.git/, what: 'git~1' },
    ];
    for (const c of cases) {
      const tar = filesTar(dir, c.names, c.rename);
      refusedUnchanged(ws, ['v001'], `import: ${c.what}`, 1, c.re, () => mstore(ws, ['import', tar]));
      rmSync(tar);
    }
  } finally {
    cleanup(dir);
    cleanup(ws);
  }
});

// ---------------------------------------------------------------------------------------
// #20.2 a store that already holds such a tree (made with git plumbing, as another tool could)

function plumb(gitdir: string, args: string[], input?: string): string {
  const r = spawnSync('git', [`--git-dir=${gitdir}`, '-c', 'user.name=t', '-c', 'user.email=t@t', ...args], { encoding: 'utf8', input });
  assert.is(r.status, 0, `git ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

/** A version `name` on top of `parent` whose tree is v001's plus `extra` tree entries (mktree lines). */
function craftVersion(gitdir: string, name: string, number: number, parent: string, extra: string[]): void {
  const meta = JSON.parse(plumb(gitdir, ['show', 'v001:.mstore/version.json'])) as Record<string, unknown>;
  Object.assign(meta, { version: name, number, description: `crafted ${name}` });
  const metaBlob = plumb(gitdir, ['hash-object', '-w', '--stdin'], `${JSON.stringify(meta, null, 2)}\n`);
  const metaTree = plumb(gitdir, ['mktree'], `100644 blob ${metaBlob}\tversion.json\n`);
  const root = plumb(gitdir, ['ls-tree', 'v001'])
    .split('\n')
    .filter((l) => !l.endsWith('\t.mstore'));
  const tree = plumb(gitdir, ['mktree'], [...root, `040000 tree ${metaTree}\t.mstore`, ...extra].join('\n') + '\n');
  const commit = plumb(gitdir, ['commit-tree', tree, '-p', parent, '-m', `crafted ${name}`]);
  plumb(gitdir, ['tag', '-a', name, commit, '-m', `${name}: crafted`]);
  plumb(gitdir, ['update-ref', 'refs/heads/latest', commit]);
}

test('a store already holding names it cannot check out still logs, shows and checks out everything else, naming the entry', () => {
  const ws = workspace();
  const out = tmpDir('mstore-names-held-');
  try {
    const gitdir = path.join(ws, '.mstore', 'git');
    const blob = plumb(gitdir, ['rev-parse', 'v001:config.json']);
    craftVersion(gitdir, 'v002', 2, plumb(gitdir, ['rev-parse', 'v001^{commit}']), [`100644 blob ${blob}\ta\\b.json`]);
    const inner = plumb(gitdir, ['mktree'], `100644 blob ${blob}\tconfig\n`);
    const sub = plumb(gitdir, ['mktree'], `040000 tree ${inner}\t.GIT\n100644 blob ${blob}\tok.json\n`);
    craftVersion(gitdir, 'v003', 3, plumb(gitdir, ['rev-parse', 'v002^{commit}']), [`040000 tree ${sub}\tsub`]);
    const bytes = storeBytes(ws);

    const log = mstore(ws, ['log']);
    assert.is(log.code, 0, `log: ${log.stderr}`);
    for (const v of ['v001', 'v002', 'v003']) assert.match(log.stdout, new RegExp(`^${v} `, 'm'), `log lists ${v}`);

    const show = mstore(ws, ['show', 'v002']);
    expectRefusal(show, 1, /v002.*'a\\\\b\.json'.*backslash/, 'show v002');
    assert.match(show.stdout, /config\.json/, 'show v002 still lists the other files');
    const showJson = mstore(ws, ['show', 'v003', '--json']);
    expectRefusal(showJson, 1, /v003.*'sub\/\.GIT'.*\.git/, 'show v003 --json');
    const shown = JSON.parse(showJson.stdout) as { files: { path: string }[] };
    assert.equal(shown.files.map((f) => f.path).sort(), ['config.json', 'latest.bin', 'model.bin', 'sub/ok.json'], 'show v003 --json lists the others');

    const co2 = mstore(ws, ['checkout', 'v002', '--to', path.join(out, 'v002')]);
    expectRefusal(co2, 1, /v002.*'a\\\\b\.json'.*backslash/, 'checkout v002 --to');
    assert.equal([...treeDigest(path.join(out, 'v002')).keys()].sort(), ['config.json', 'latest.bin', 'model.bin'], 'checkout v002 wrote the other files');
    const co3 = mstore(ws, ['checkout', 'v003', '--to', path.join(out, 'v003')]);
    expectRefusal(co3, 1, /v003.*'sub\/\.GIT'.*\.git/, 'checkout v003 --to');
    assert.equal(readFileSync(path.join(out, 'v003', 'sub', 'ok.json'), 'utf8'), '{"hidden_size": 64}\n', 'checkout v003 wrote sub/ok.json');
    ok(ws, ['checkout', 'v003', 'sub/ok.json', '--to', path.join(out, 'some')]);
    ok(ws, ['checkout', 'v001', '--to', path.join(out, 'v001')]);

    const verify = mstore(ws, ['verify', 'v002']);
    assert.is(verify.code, 1, `verify v002: ${verify.stdout}${verify.stderr}`);
    assert.match(verify.stdout, /v002.*'a\\\\b\.json'.*backslash/, 'verify v002 names the entry');
    ok(ws, ['verify', 'v001']);
    const fsck = mstore(ws, ['fsck']);
    assert.is(fsck.code, 1, `fsck finds the entries: ${fsck.stdout}${fsck.stderr}`);
    assert.match(fsck.stdout + fsck.stderr, /a\\\\b\.json|a\\b\.json/, 'fsck names the entry');
    assert.not.match(fsck.stdout + fsck.stderr, /internal error/i, 'fsck: no internal error');
    assert.is(storeBytes(ws), bytes, 'reading changed nothing');

    // A new version on top does not carry the entries the head cannot hold.
    writeFileSync(path.join(ws, 'config.json'), '{"hidden_size": 66}\n');
    ok(ws, ['commit', '-m', 'after']);
    ok(ws, ['show', 'v004']);
    ok(ws, ['status']);
  } finally {
    cleanup(out);
    cleanup(ws);
  }
});

test.run();
