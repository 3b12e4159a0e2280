/**
 * export / import through the real CLI: bundles recreate versions with identical ids and
 * bytes, both layouts are byte-for-byte deterministic, and hostile archives are refused
 * before anything is written (refs, packs, git objects and the ref history unchanged).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, lstatSync, symlinkSync, writeFileSync } from 'node:fs';
import { extract, pack, type Header } from 'tar-stream';
import { cleanup, fillPattern, git, layerTensors, mstore, mstoreJson, sha256File, tmpDir, treeDigest, writeModelDir, writeSafetensors, type RunResult } from './helpers.js';

interface ExportJson {
  format: string;
  bytes: number;
  versions: { name: string; commit: string }[];
  refs: Record<string, string>;
  gitObjects: number;
  chunks: number;
  warnings: string[];
}

interface ImportJson {
  format: string;
  versions: { name: string; commit: string; from?: string; line?: string }[];
  refs: { ref: string; old: string | null; new: string; action: string }[];
  newChunks: number;
  verifiedBytes: number;
}

const LONG_PAX = `long/${'a'.repeat(90)}/${'b'.repeat(90)}/${'c'.repeat(90)}.bin`; // > 255 bytes: a pax path
const LONG_USTAR = `mid/${'d'.repeat(70)}/${'e'.repeat(60)}.json`; // > 100 bytes: the ustar prefix field

function ok(cwd: string, args: string[]): string {
  const r = mstore(cwd, args);
  assert.is(r.code, 0, `mstore ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

function run(cmd: string, args: string[], cwd?: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  assert.is(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

interface Source {
  ws: string;
  gitdir: string;
  /** Version name -> digest of its files (treeDigest of the workspace when it was committed). */
  digests: Map<string, Map<string, string>>;
}

let source: Source | undefined;

/**
 * v001, v002 (a third of the tensors changed, tagged production) on the default line and
 * merged/v001 on line merged: a 6 MiB safetensors, an adapter directory, symlinks (one
 * into a parent directory), an executable, a > 255-byte path with binary content and a
 * > 100-byte path with text.
 */
function makeSource(): Source {
  if (source) return source;
  const ws = tmpDir('mstore-export-src-');
  ok(ws, ['init']);
  const digests = new Map<string, Map<string, string>>();
  writeModelDir(ws, { tensors: layerTensors(6, 512, 512, 1), step: 1 });
  symlinkSync('model.safetensors', path.join(ws, 'latest.safetensors'));
  symlinkSync('../config.json', path.join(ws, 'adapter', 'config_link.json'));
  writeFileSync(path.join(ws, 'run.sh'), '#!/bin/sh\necho train\n');
  chmodSync(path.join(ws, 'run.sh'), 0o755);
  mkdirSync(path.dirname(path.join(ws, LONG_PAX)), { recursive: true });
  const blob = Buffer.alloc(2 * 1024 * 1024 + 17);
  fillPattern(blob, 42);
  writeFileSync(path.join(ws, LONG_PAX), blob);
  mkdirSync(path.dirname(path.join(ws, LONG_USTAR)), { recursive: true });
  writeFileSync(path.join(ws, LONG_USTAR), '{"long": true}\n');
  writeFileSync(path.join(ws, 'metrics.json'), JSON.stringify({ loss: 1.25, accuracy: 0.5 }));
  ok(ws, ['commit', '-m', 'first', '--metrics', path.join(ws, 'metrics.json'), '--status', 'completed', '--meta', 'epoch=1']);
  digests.set('v001', treeDigest(ws));
  writeSafetensors(path.join(ws, 'model.safetensors'), [...layerTensors(4, 512, 512, 1), ...layerTensors(2, 512, 512, 77)]);
  writeFileSync(path.join(ws, 'config.json'), JSON.stringify({ model_type: 'qwen3', hidden_size: 1024 }));
  ok(ws, ['commit', '-m', 'second']);
  digests.set('v002', treeDigest(ws));
  ok(ws, ['tag', 'production', 'v002']);
  writeFileSync(path.join(ws, 'notes.txt'), 'merged weights\n');
  ok(ws, ['commit', '-m', 'merged one', '--line', 'merged']);
  digests.set('merged/v001', treeDigest(ws));
  source = { ws, gitdir: path.join(ws, '.mstore', 'git'), digests };
  return source;
}

test.after(() => {
  if (source) cleanup(source.ws);
});

/** What a store holds: every ref (and its value), HEAD, packed-refs, git objects, packs (with sizes), reflog.jsonl. */
function snapshot(storeDir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    const abs = path.join(storeDir, rel);
    if (!existsSync(abs)) return;
    for (const name of readdirSync(abs).sort()) {
      const p = `${rel}/${name}`;
      const st = lstatSync(path.join(storeDir, p));
      if (st.isDirectory()) walk(p);
      else out.push(`${p} ${st.size}${p.startsWith('git/refs/') ? ` ${readFileSync(path.join(storeDir, p), 'utf8').trim()}` : ''}`);
    }
  };
  walk('git/refs');
  walk('git/objects');
  walk('packs');
  for (const f of ['git/HEAD', 'git/packed-refs', 'reflog.jsonl']) {
    const p = path.join(storeDir, f);
    out.push(`${f}: ${existsSync(p) ? readFileSync(p, 'utf8') : '(absent)'}`);
  }
  return out;
}

interface TarItem {
  header: Header;
  body: Buffer;
}

async function readTarFile(file: string): Promise<TarItem[]> {
  const ex = extract();
  const items: TarItem[] = [];
  const done = (async () => {
    for await (const e of ex) {
      const parts: Buffer[] = [];
      for await (const b of e) parts.push(b as Buffer);
      items.push({ header: { ...e.header }, body: Buffer.concat(parts) });
    }
  })();
  ex.end(readFileSync(file));
  await done;
  return items;
}

async function writeTarFile(file: string, items: { header: Partial<Header> & { name: string }; body?: Buffer }[]): Promise<void> {
  const p = pack();
  const parts: Buffer[] = [];
  const done = (async () => {
    for await (const b of p) parts.push(b as Buffer);
  })();
  for (const it of items) {
    await new Promise<void>((resolve, reject) => {
      const h = { mtime: new Date(0), ...it.header };
      const cb = (err?: Error | null): void => (err ? reject(err) : resolve());
      if (it.body) p.entry(h, it.body, cb);
      else p.entry(h, cb);
    });
  }
  p.finalize();
  await done;
  writeFileSync(file, Buffer.concat(parts));
}

/** exit 1, exactly one line on stderr, `mstore: error: ` first, matching `re`. */
function expectRefused(r: RunResult, re: RegExp, what: string): void {
  assert.is(r.code, 1, `${what}: exit code (stderr: ${r.stderr.slice(0, 500)})`);
  const lines = r.stderr.replace(/\n$/, '').split('\n');
  assert.is(lines.length, 1, `${what}: one line on stderr, got:\n${r.stderr.slice(0, 1000)}`);
  assert.match(lines[0], /^mstore: error: /, what);
  assert.match(lines[0], re, `${what}: ${lines[0]}`);
}

const REVS = ['v001', 'v002', 'merged/v001', 'production', 'latest', 'merged/latest'];

test('bundle: export -> import into a new store gives identical ids and bytes; git fsck --strict is clean; same bytes every time', () => {
  const src = makeSource();
  const dir = tmpDir('mstore-export-');
  try {
    const a = path.join(dir, 'a.tar');
    const b = path.join(dir, 'b.tar');
    const ea = mstoreJson<ExportJson>(src.ws, ['export', 'v001', 'v002', 'merged/v001', '-o', a]);
    assert.is(ea.format, 'bundle');
    assert.equal(ea.versions.map((v) => v.name), ['merged/v001', 'v001', 'v002']);
    assert.equal(Object.keys(ea.refs), [
      'refs/heads/latest', 'refs/heads/merged/latest', 'refs/tags/merged/v001', 'refs/tags/production', 'refs/tags/v001', 'refs/tags/v002',
    ]);
    assert.is(ea.refs['refs/tags/production'], git(src.gitdir, ['rev-parse', 'production']).stdout.trim());
    assert.is(ea.bytes, lstatSync(a).size);
    // the same versions named differently, in another order: the same bytes
    mstoreJson<ExportJson>(src.ws, ['export', 'merged/latest', 'production', 'v001', 'latest', '-o', b]);
    assert.is(sha256File(b), sha256File(a), 'two exports of the same versions are byte-identical');

    const target = path.join(dir, 'target');
    mkdirSync(target);
    ok(target, ['init']);
    const im = mstoreJson<ImportJson>(target, ['import', a]);
    assert.is(im.format, 'bundle');
    assert.equal(im.refs.map((r) => [r.ref, r.action]), [
      ['refs/tags/merged/v001', 'created'], ['refs/tags/production', 'created'], ['refs/tags/v001', 'created'], ['refs/tags/v002', 'created'],
      ['refs/heads/latest', 'created'], ['refs/heads/merged/latest', 'created'],
    ]);
    assert.ok(im.verifiedBytes > 8 * 1024 * 1024, `verified ${im.verifiedBytes} bytes`);
    const tgit = path.join(target, '.mstore', 'git');
    for (const rev of [...REVS, ...REVS.map((r) => `${r}^{commit}`), 'v002^']) {
      const want = git(src.gitdir, ['rev-parse', '--verify', rev]);
      assert.is(want.code, 0, `source rev-parse ${rev}`);
      assert.is(git(tgit, ['rev-parse', '--verify', rev]).stdout, want.stdout, `rev-parse ${rev}`);
    }
    for (const [name, digest] of src.digests) {
      const dest = path.join(dir, 'co', name);
      ok(target, ['checkout', name, '--to', dest]);
      assert.equal(treeDigest(dest), digest, `${name}: checkout from the importing store, byte for byte`);
    }
    assert.is(readFileSync(path.join(dir, 'co', 'v001', LONG_PAX)).length, 2 * 1024 * 1024 + 17);
    const fsck = git(tgit, ['fsck', '--strict', '--no-dangling']);
    assert.is(fsck.code, 0, fsck.stderr);
    assert.is(fsck.stderr.trim(), '', 'fsck reports nothing');
    assert.is(mstore(target, ['verify', '--all']).code, 0);
    const meta = JSON.parse(git(tgit, ['show', 'v001:.mstore/version.json']).stdout);
    assert.is(meta.metrics.accuracy, 0.5);
    const history = readFileSync(path.join(target, '.mstore', 'reflog.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(history.map((e) => [e.ref, e.reason]).slice(0, 2), [['refs/tags/merged/v001', 'import'], ['refs/tags/production', 'import']]);

    // exported from the importing store: the same bytes again
    const c = path.join(dir, 'c.tar');
    ok(target, ['export', 'v001', 'v002', 'merged/v001', '-o', c]);
    assert.is(sha256File(c), sha256File(a), 'the importing store exports the identical bundle');

    // importing again changes nothing
    const before = snapshot(path.join(target, '.mstore'));
    const again = mstoreJson<ImportJson>(target, ['import', a]);
    assert.ok(again.refs.every((r) => r.action === 'unchanged'));
    assert.is(again.newChunks, 0);
    assert.equal(snapshot(path.join(target, '.mstore')), before, 'a second import writes no ref, pack or history entry');
  } finally {
    cleanup(dir);
  }
});

test('bundle layout: header first, then git objects, manifests and chunks, each sorted; objects hash to their names', async () => {
  const src = makeSource();
  const dir = tmpDir('mstore-export-');
  try {
    const a = path.join(dir, 'a.tar');
    const r = mstoreJson<ExportJson>(src.ws, ['export', 'v002', '-o', a]);
    const items = await readTarFile(a);
    assert.is(items[0].header.name, 'mstore-bundle.json');
    const header = JSON.parse(items[0].body.toString('utf8'));
    assert.equal(header, {
      format: 'mstore.bundle/1',
      refs: r.refs,
      versions: [{ name: 'v002', commit: git(src.gitdir, ['rev-parse', 'v002^{commit}']).stdout.trim() }],
    });
    // latest points at v002, production too; v001 is only an ancestor (its objects, not its tag)
    assert.equal(Object.keys(header.refs), ['refs/heads/latest', 'refs/tags/production', 'refs/tags/v002']);
    const names = items.slice(1).map((i) => i.header.name);
    const section = (n: string): number => ['git/', 'files/', 'chunks/'].findIndex((s) => n.startsWith(s));
    assert.ok(names.every((n) => section(n) >= 0), 'only git/, files/ and chunks/ entries');
    for (let i = 1; i < names.length; i++) {
      assert.ok(section(names[i - 1]) < section(names[i]) || (section(names[i - 1]) === section(names[i]) && names[i - 1] < names[i]), `${names[i - 1]} before ${names[i]}`);
    }
    assert.is(names.filter((n) => n.startsWith('git/')).length, r.gitObjects);
    assert.is(names.filter((n) => n.startsWith('chunks/')).length, r.chunks);
    // the whole history: v001's commit and its metadata blob travel with v002
    const v001 = git(src.gitdir, ['rev-parse', 'v001^{commit}']).stdout.trim();
    const v001meta = git(src.gitdir, ['rev-parse', 'v001:.mstore/version.json']).stdout.trim();
    assert.ok(names.includes(`git/${v001}`) && names.includes(`git/${v001meta}`));
    for (const it of items.slice(1)) {
      const algo = it.header.name.startsWith('git/') ? 'sha1' : 'sha256';
      if (it.header.name.startsWith('files/')) continue;
      assert.is(createHash(algo).update(it.body).digest('hex'), it.header.name.split('/')[1], it.header.name);
      assert.is(it.header.uid, 0);
      assert.is(it.header.mode, 0o644);
    }
    const commitObj = items.find((i) => i.header.name === `git/${v001}`)!.body.toString('utf8');
    assert.match(commitObj, /^commit \d+\0tree [0-9a-f]{40}\n/);
  } finally {
    cleanup(dir);
  }
});

test('files layout: GNU tar extracts each version byte for byte; headers are fixed; import makes new versions with the metadata', async () => {
  const src = makeSource();
  const dir = tmpDir('mstore-export-');
  try {
    const a = path.join(dir, 'a.tar');
    const b = path.join(dir, 'b.tar');
    const ea = mstoreJson<ExportJson>(src.ws, ['export', 'v001', 'v002', 'merged/v001', '--format', 'files', '-o', a]);
    assert.is(ea.format, 'files');
    mstoreJson(src.ws, ['export', 'merged/latest', 'v002', 'v001', '--format', 'files', '-o', b]);
    assert.is(sha256File(b), sha256File(a), 'two files exports of the same versions are byte-identical');

    const x = path.join(dir, 'x');
    mkdirSync(x);
    run('tar', ['-xf', a, '-C', x]);
    for (const [name, digest] of src.digests) {
      assert.equal(treeDigest(path.join(x, name)), digest, `${name} as extracted by GNU tar`);
      assert.is(readFileSync(path.join(x, name, '.mstore', 'version.json'), 'utf8'), git(src.gitdir, ['show', `${name}:.mstore/version.json`]).stdout);
    }
    assert.is(lstatSync(path.join(x, 'v001', LONG_PAX)).size, 2 * 1024 * 1024 + 17);

    const items = await readTarFile(a);
    const names = items.map((i) => i.header.name);
    assert.equal(names, [...names].sort((p, q) => Buffer.compare(Buffer.from(p), Buffer.from(q))), 'entries sorted by path');
    assert.ok(names.indexOf('merged/') < names.indexOf('merged/v001/'), 'a directory before its contents');
    assert.ok(names.includes(`v001/${LONG_PAX}`) && names.includes(`v001/${LONG_USTAR}`), 'long paths kept whole');
    const time = (rev: string): number => Number(git(src.gitdir, ['log', '-1', '--format=%ct', rev]).stdout.trim());
    for (const it of items) {
      const h = it.header;
      const version = h.name.startsWith('merged/') ? 'merged/v001' : h.name.slice(0, 4);
      if (h.name !== 'merged/') assert.is(h.mtime!.getTime() / 1000, time(version), `${h.name}: mtime is the commit time`);
      assert.is(h.uid, 0);
      assert.is(h.gid, 0);
      assert.is(h.uname, '');
      assert.is(h.gname, '');
      assert.is((h.pax as Record<string, string> | null | undefined)?.mtime, undefined, `${h.name}: no pax timestamps`);
    }
    const byName = new Map(items.map((i) => [i.header.name, i.header]));
    assert.is(byName.get('v001/run.sh')!.mode, 0o755);
    assert.is(byName.get('v001/config.json')!.mode, 0o644);
    assert.is(byName.get('v001/adapter/')!.type, 'directory');
    assert.is(byName.get('v001/latest.safetensors')!.type, 'symlink');
    assert.is(byName.get('v001/adapter/config_link.json')!.linkname, '../config.json');

    const target = path.join(dir, 'target');
    mkdirSync(target);
    ok(target, ['init', '--bare']);
    const im = mstoreJson<ImportJson>(target, ['import', a]);
    assert.is(im.format, 'files');
    assert.equal(im.versions.map((v) => [v.from, v.name, v.line]), [['v001', 'v001', 'main'], ['v002', 'v002', 'main'], ['merged/v001', 'merged/v001', 'merged']]);
    const tgit = path.join(target, 'git');
    for (const [name, digest] of src.digests) {
      const dest = path.join(dir, 'co', name);
      ok(target, ['checkout', name, '--to', dest]);
      assert.equal(treeDigest(dest), digest, `${name}: imported from the files layout, byte for byte`);
      assert.is.not(git(tgit, ['rev-parse', `${name}^{commit}`]).stdout, git(src.gitdir, ['rev-parse', `${name}^{commit}`]).stdout, `${name}: a new version`);
    }
    assert.is(git(tgit, ['rev-parse', 'v002^']).stdout, git(tgit, ['rev-parse', 'v001^{commit}']).stdout, 'v002 follows v001');
    const meta = JSON.parse(git(tgit, ['show', 'v001:.mstore/version.json']).stdout);
    assert.is(meta.description, 'first');
    assert.equal(meta.metrics, { loss: 1.25, accuracy: 0.5 });
    assert.is(meta.status, 'completed');
    assert.equal(meta.meta, { epoch: 1 });
    const fsck = git(tgit, ['fsck', '--strict']);
    assert.is(fsck.code, 0, fsck.stderr);
    // --line puts them all on one line
    const again = mstoreJson<ImportJson>(target, ['import', a, '--line', 'copies']);
    assert.equal(again.versions.map((v) => v.name), ['copies/v001', 'copies/v002', 'copies/v003']);
    // what GNU tar makes of the extracted directories (`tar -cf g.tar .`: './' names, its own order) imports too
    const g = path.join(dir, 'g.tar');
    run('tar', ['-cf', g, '-C', x, '.']);
    const gi = mstoreJson<ImportJson>(target, ['import', g, '--line', 'gnu']);
    assert.equal(gi.versions.map((v) => v.from).sort(), ['merged/v001', 'v001', 'v002']);
    const dest = path.join(dir, 'co', 'gnu');
    ok(target, ['checkout', gi.versions.find((v) => v.from === 'v002')!.name, '--to', dest]);
    assert.equal(treeDigest(dest), src.digests.get('v002'), 'v002 through GNU tar and back');
  } finally {
    cleanup(dir);
  }
});

test('hostile archives are refused naming the entry, before anything is written', async () => {
  const src = makeSource();
  const dir = tmpDir('mstore-export-');
  try {
    const target = path.join(dir, 'target');
    mkdirSync(target);
    ok(target, ['init']);
    writeFileSync(path.join(target, 'weights.bin'), Buffer.alloc(3 * 1024 * 1024, 7));
    // on another line: no ref of the bundles below collides, so only the content checks stand in the way
    ok(target, ['commit', '-m', 'existing', '--line', 'local']);
    const storeDir = path.join(target, '.mstore');
    let before = snapshot(storeDir);
    const meta = Buffer.from(`${JSON.stringify({ schema: 'mstore.version/1', version: 'v001', line: 'main', description: 'x' })}\n`);
    const version = [
      { header: { name: 'v001/', type: 'directory' as const } },
      { header: { name: 'v001/.mstore/', type: 'directory' as const } },
      { header: { name: 'v001/.mstore/version.json' }, body: meta },
      { header: { name: 'v001/a.txt' }, body: Buffer.from('fine\n') },
    ];
    const cases: { name: string; items: { header: Partial<Header> & { name: string }; body?: Buffer }[]; re: RegExp }[] = [
      { name: 'dotdot', items: [{ header: { name: '../x' }, body: Buffer.from('evil') }], re: /entry '\.\.\/x': '\.\.' component/ },
      { name: 'absolute', items: [...version, { header: { name: '/abs' }, body: Buffer.from('evil') }], re: /entry '\/abs': absolute path/ },
      { name: 'inner-dotdot', items: [...version, { header: { name: 'a/../../x' }, body: Buffer.from('evil') }], re: /entry 'a\/\.\.\/\.\.\/x': '\.\.' component/ },
      { name: 'last-dotdot', items: [...version, { header: { name: 'v001/../../evil.txt' }, body: Buffer.from('evil') }], re: /entry 'v001\/\.\.\/\.\.\/evil\.txt'/ },
      {
        name: 'link-up',
        items: [...version, { header: { name: 'v001/evil', type: 'symlink', linkname: '../../etc/passwd' } }],
        re: /entry 'v001\/evil': symlink target '\.\.\/\.\.\/etc\/passwd' leaves its version directory/,
      },
      {
        name: 'link-abs',
        items: [...version, { header: { name: 'v001/evil', type: 'symlink', linkname: '/etc/passwd' } }],
        re: /entry 'v001\/evil': absolute symlink target '\/etc\/passwd'/,
      },
      {
        name: 'link-chain',
        items: [
          ...version,
          { header: { name: 'v001/esc', type: 'symlink', linkname: 'sub/../x' } },
          { header: { name: 'v001/sub', type: 'symlink', linkname: '.' } },
        ],
        re: /entry 'v001\/esc': symlink target 'sub\/\.\.\/x' climbs out of the symlink 'sub'/,
      },
      {
        name: 'through-link',
        items: [...version, { header: { name: 'v001/d', type: 'symlink', linkname: 'a.txt' } }, { header: { name: 'v001/d/x' }, body: Buffer.from('x') }],
        re: /entry 'v001\/d\/x': its parent 'v001\/d' is a symlink/,
      },
      { name: 'hardlink', items: [...version, { header: { name: 'v001/h', type: 'link', linkname: 'v001/a.txt' } }], re: /entry 'v001\/h': a hard link/ },
      { name: 'no-version', items: [{ header: { name: 'model/a.txt' }, body: Buffer.from('x') }], re: /no version directory/ },
    ];
    for (const c of cases) {
      const file = path.join(dir, `${c.name}.tar`);
      await writeTarFile(file, c.items);
      expectRefused(mstore(target, ['import', file]), c.re, c.name);
      assert.equal(snapshot(storeDir), before, `${c.name}: the store is unchanged`);
      assert.not.ok(existsSync(path.join(dir, 'x')) || existsSync(path.join(dir, 'evil.txt')) || existsSync(path.join(target, 'evil.txt')), `${c.name}: nothing outside`);
    }

    // Bundles: tampered and incomplete ones, made from a real export.
    const good = path.join(dir, 'good.tar');
    ok(src.ws, ['export', 'v001', 'v002', '-o', good]);
    const items = await readTarFile(good);
    const rewrite = async (name: string, f: (its: TarItem[]) => TarItem[]): Promise<string> => {
      const file = path.join(dir, `${name}.tar`);
      await writeTarFile(file, f(items.map((i) => ({ header: { ...i.header }, body: Buffer.from(i.body) }))));
      return file;
    };
    const chunk = items.find((i) => i.header.name.startsWith('chunks/'))!.header.name;
    const blob = `git/${git(src.gitdir, ['rev-parse', 'v001:config.json']).stdout.trim()}`;
    const bundles: { name: string; file: string; re: RegExp }[] = [
      {
        name: 'bad-chunk',
        file: await rewrite('bad-chunk', (its) => {
          const it = its.find((i) => i.header.name === chunk)!;
          it.body[it.body.length - 1] ^= 1;
          return its;
        }),
        re: new RegExp(`entry '${chunk}': its bytes hash to [0-9a-f]{64}, not to its name`),
      },
      {
        name: 'bad-object',
        file: await rewrite('bad-object', (its) => {
          const it = its.find((i) => i.header.name === blob)!;
          it.body[it.body.length - 2] ^= 1;
          return its;
        }),
        re: new RegExp(`entry '${blob}': its bytes hash to [0-9a-f]{40}, not to its name`),
      },
      {
        name: 'missing-chunk',
        file: await rewrite('missing-chunk', (its) => its.filter((i) => i.header.name !== chunk)),
        re: new RegExp(`chunk ${chunk.slice(7)} of .* is in neither the bundle nor this store`),
      },
      {
        name: 'bundle-dotdot',
        file: await rewrite('bundle-dotdot', (its) => [...its, { header: { ...its[1].header, name: 'git/../../x' }, body: its[1].body }]),
        re: /entry 'git\/\.\.\/\.\.\/x': not a bundle entry name/,
      },
      {
        name: 'bundle-symlink',
        file: await rewrite('bundle-symlink', (its) => [...its, { header: { name: 'chunks/x', type: 'symlink', linkname: '/etc/passwd', mode: 0o777, size: 0 } as Header, body: Buffer.alloc(0) }]),
        re: /entry 'chunks\/x': a bundle holds only regular files, not a symlink/,
      },
    ];
    for (const c of bundles) {
      expectRefused(mstore(target, ['import', c.file]), c.re, c.name);
      assert.equal(snapshot(storeDir), before, `${c.name}: the store is unchanged`);
    }
    // a v001 of its own: a bundle carrying another v001 must not replace it
    ok(target, ['commit', '-m', 'mine']);
    before = snapshot(storeDir);
    expectRefused(mstore(target, ['import', good]), /refs\/tags\/v001 already exists here with a different value/, 'tag-conflict');
    assert.equal(snapshot(storeDir), before, 'tag-conflict: the store is unchanged');
    const garbage = path.join(dir, 'garbage.tar');
    const noise = Buffer.alloc(4096);
    fillPattern(noise, 3);
    writeFileSync(garbage, noise);
    expectRefused(mstore(target, ['import', garbage]), /garbage\.tar: not a valid tar archive/, 'garbage');
    expectRefused(mstore(target, ['import', path.join(dir, 'absent.tar')]), /absent\.tar: no such file/, 'absent');
    assert.equal(snapshot(storeDir), before);
  } finally {
    cleanup(dir);
  }
});

test('a line head fast-forwards, tags never move; usage errors exit 2; --help has examples', () => {
  const ws = tmpDir('mstore-export-ff-');
  try {
    ok(ws, ['init']);
    writeFileSync(path.join(ws, 'w.bin'), Buffer.alloc(2 * 1024 * 1024, 1));
    ok(ws, ['commit', '-m', 'one']);
    const one = path.join(ws, '..', `${path.basename(ws)}-one.tar`);
    const two = path.join(ws, '..', `${path.basename(ws)}-two.tar`);
    try {
      ok(ws, ['export', 'latest', '-o', one]);
      writeFileSync(path.join(ws, 'w.bin'), Buffer.alloc(2 * 1024 * 1024, 2));
      ok(ws, ['commit', '-m', 'two']);
      ok(ws, ['export', 'v001', 'v002', '-o', two]);
      const target = tmpDir('mstore-export-ff-target-');
      try {
        ok(target, ['init', '--bare']);
        mstoreJson(target, ['import', one]);
        const r = mstoreJson<ImportJson>(target, ['import', two]);
        assert.equal(r.refs.map((x) => [x.ref, x.action]), [['refs/tags/v001', 'unchanged'], ['refs/tags/v002', 'created'], ['refs/heads/latest', 'fast-forward']]);
        assert.is(git(path.join(target, 'git'), ['rev-parse', 'latest']).stdout, git(path.join(ws, '.mstore', 'git'), ['rev-parse', 'latest']).stdout);
        // a line that went elsewhere is not moved back
        const before = snapshot(target);
        expectRefused(mstore(target, ['import', one]), /refs\/heads\/latest is [0-9a-f]{12} here and [0-9a-f]{12} in the bundle, which does not descend from it/, 'rewind');
        assert.equal(snapshot(target), before);
        const usage = (args: string[], re: RegExp): void => {
          const u = mstore(target, args);
          assert.is(u.code, 2, `${args.join(' ')}: ${u.stderr}`);
          assert.match(u.stderr, re);
        };
        usage(['import', two, '--line', 'x'], /--line applies to the files layout/);
        usage(['export', 'v001'], /output/);
        usage(['export', 'v001', '-o', 'x.tar', '--format', 'zip'], /format/);
        usage(['import'], /Not enough non-option arguments/);
        expectRefused(mstore(target, ['export', 'v009', '-o', path.join(target, 'x.tar')]), /unknown revision 'v009'/, 'unknown rev');
        assert.not.ok(existsSync(path.join(target, 'x.tar')));
        for (const cmd of ['export', 'import']) {
          const h = mstore(target, [cmd, '--help']);
          assert.is(h.code, 0);
          assert.match(h.stdout, /Examples:/);
        }
      } finally {
        cleanup(target);
      }
    } finally {
      cleanup(one);
      cleanup(two);
    }
  } finally {
    cleanup(ws);
  }
});

test.run();
