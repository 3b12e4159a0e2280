/** Round trips through the real CLI, read back by real git. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { writeFileSync, symlinkSync, chmodSync, mkdirSync, rmSync, existsSync, readFileSync, lstatSync, readdirSync } from 'node:fs';
import { cleanup, git, layerTensors, mstore, mstoreJson, sha256File, tmpDir, treeDigest, writeModelDir, writeSafetensors } from './helpers.js';

interface CommitJson {
  changed: boolean;
  version: string;
  commit: string;
  totalBytes: number;
  newBytes: number;
}

test('init, commit three versions, log, checkout each byte for byte, git reads it', () => {
  const ws = tmpDir();
  const out = tmpDir();
  try {
    assert.is(mstore(ws, ['init']).code, 0);
    const digests: Map<string, string>[] = [];
    for (let v = 1; v <= 3; v++) {
      writeModelDir(ws, { tensors: layerTensors(4, 256, 512, v === 3 ? 10 : 1), step: v });
      if (v === 2) writeFileSync(path.join(ws, 'config.json'), JSON.stringify({ model_type: 'qwen3', hidden_size: 1024 }));
      writeFileSync(path.join(ws, 'metrics.json'), JSON.stringify({ loss: 3 - v, accuracy: 0.3 * v }));
      const r = mstoreJson<CommitJson>(ws, ['commit', '-m', `version ${v}`, '--metrics', path.join(ws, 'metrics.json'), '--meta', `epoch=${v}`]);
      assert.ok(r.changed);
      assert.is(r.version, `v00${v}`);
      digests.push(treeDigest(ws));
    }
    const log = mstoreJson<{ version: string; description: string; metrics: { loss: number }; meta: { meta: { epoch: number } } }[]>(ws, ['log']);
    assert.equal(log.map((e) => e.version), ['v003', 'v002', 'v001']);
    assert.is(log[2].description, 'version 1');
    assert.is(log[0].metrics.loss, 0);
    assert.is(log[1].meta.meta.epoch, 2);
    for (let v = 1; v <= 3; v++) {
      const dest = path.join(out, `v${v}`);
      assert.is(mstore(ws, ['checkout', `v00${v}`, '--to', dest]).code, 0);
      assert.equal(treeDigest(dest), digests[v - 1], `v00${v} round trip`);
    }
    const gitdir = path.join(ws, '.mstore', 'git');
    const gl = git(gitdir, ['log', '--format=%s', 'v003']);
    assert.is(gl.code, 0, gl.stderr);
    assert.equal(gl.stdout.trim().split('\n'), ['version 3', 'version 2', 'version 1']);
    const meta = JSON.parse(git(gitdir, ['show', 'v002:.mstore/version.json']).stdout);
    assert.is(meta.version, 'v002');
    assert.is(meta.metrics.accuracy, 0.6);
    const fsck = git(gitdir, ['fsck', '--strict']);
    assert.is(fsck.code, 0, fsck.stderr);
    const pointer = git(gitdir, ['show', 'v003:model.safetensors']).stdout;
    assert.match(pointer, `oid sha256:${sha256File(path.join(ws, 'model.safetensors'))}`);
    assert.is(git(gitdir, ['show', 'v002:config.json']).stdout, JSON.stringify({ model_type: 'qwen3', hidden_size: 1024 }));
  } finally {
    cleanup(ws);
    cleanup(out);
  }
});

test('unchanged workspace creates nothing; latest, latest~N, short ids and lines resolve', () => {
  const ws = tmpDir();
  try {
    mstore(ws, ['init']);
    writeModelDir(ws);
    const a = mstoreJson<CommitJson>(ws, ['commit', '-m', 'one']);
    const b = mstoreJson<CommitJson>(ws, ['commit', '-m', 'two']);
    assert.is(b.changed, false);
    assert.is(b.version, 'v001');
    assert.is(mstore(ws, ['log']).stdout.trim().split('\n').length, 1);
    writeFileSync(path.join(ws, 'notes.txt'), 'more');
    mstoreJson(ws, ['commit', '-m', 'two']);
    writeFileSync(path.join(ws, 'notes.txt'), 'even more');
    mstoreJson(ws, ['commit', '-m', 'three']);
    const show = (rev: string) => mstoreJson<{ version: string }>(ws, ['show', rev]).version;
    assert.is(show('latest'), 'v003');
    assert.is(show('latest~2'), 'v001');
    assert.is(show('v003^'), 'v002');
    assert.is(show(a.commit.slice(0, 7)), 'v001');
    assert.is(show(a.commit), 'v001');
    // another line
    writeFileSync(path.join(ws, 'notes.txt'), 'merged');
    const m = mstoreJson<CommitJson>(ws, ['commit', '-m', 'merged one', '--line', 'merged']);
    assert.is(m.version, 'merged/v001');
    assert.is(show('merged/latest'), 'merged/v001');
    assert.is(show('latest'), 'v003');
    assert.is(git(path.join(ws, '.mstore', 'git'), ['rev-parse', 'merged/v001^{commit}']).stdout.trim(), m.commit);
  } finally {
    cleanup(ws);
  }
});

test('symlinks stay symlinks, the executable bit is kept, .mstoreignore applies, empty dirs are skipped', () => {
  const ws = tmpDir();
  const dest = tmpDir();
  try {
    mstore(ws, ['init']);
    writeModelDir(ws);
    writeFileSync(path.join(ws, 'run.sh'), '#!/bin/sh\necho hi\n');
    chmodSync(path.join(ws, 'run.sh'), 0o755);
    symlinkSync('model.safetensors', path.join(ws, 'latest.safetensors'));
    symlinkSync('/etc/passwd', path.join(ws, 'outside'));
    mkdirSync(path.join(ws, 'empty'));
    mkdirSync(path.join(ws, 'logs'));
    writeFileSync(path.join(ws, 'logs', 'train.log'), 'noise');
    writeFileSync(path.join(ws, '.mstoreignore'), 'logs/\n*.tmp\n');
    writeFileSync(path.join(ws, 'x.tmp'), 'noise');
    mstoreJson(ws, ['commit', '-m', 'links']);
    const files = mstoreJson<{ files: { path: string; mode: string; kind: string }[] }>(ws, ['show', 'v001']).files;
    const byPath = new Map(files.map((f) => [f.path, f]));
    assert.is(byPath.get('latest.safetensors')?.mode, '120000');
    assert.is(byPath.get('outside')?.kind, 'link');
    assert.is(byPath.get('run.sh')?.mode, '100755');
    assert.not.ok(byPath.has('logs/train.log'));
    assert.not.ok(byPath.has('x.tmp'));
    assert.ok(byPath.has('.mstoreignore'));
    assert.is(mstore(ws, ['checkout', 'v001', '--to', dest]).code, 0);
    const d = treeDigest(dest);
    assert.is(d.get('outside'), 'link:/etc/passwd');
    assert.is(d.get('latest.safetensors'), 'link:model.safetensors');
    assert.match(d.get('run.sh')!, /:x$/);
    assert.not.ok(existsSync(path.join(dest, 'empty')));
  } finally {
    cleanup(ws);
    cleanup(dest);
  }
});

test('status sees added, modified, deleted; checkout refuses to overwrite local changes without --force', () => {
  const ws = tmpDir();
  try {
    mstore(ws, ['init']);
    writeModelDir(ws);
    mstoreJson(ws, ['commit', '-m', 'one']);
    writeSafetensors(path.join(ws, 'model.safetensors'), layerTensors(4, 256, 512, 50));
    mstoreJson(ws, ['commit', '-m', 'two']);
    let st = mstoreJson<{ added: string[]; modified: string[]; deleted: string[] }>(ws, ['status']);
    assert.equal([st.added, st.modified, st.deleted], [[], [], []]);
    writeFileSync(path.join(ws, 'new.txt'), 'new');
    writeFileSync(path.join(ws, 'config.json'), '{"changed":true}');
    rmSync(path.join(ws, 'adapter', 'adapter_config.json'));
    st = mstoreJson(ws, ['status']);
    assert.equal(st.added, ['new.txt']);
    assert.equal(st.modified, ['config.json']);
    assert.equal(st.deleted, ['adapter/adapter_config.json']);
    const before = readFileSync(path.join(ws, 'config.json'), 'utf8');
    const r = mstore(ws, ['checkout', 'v001']);
    assert.is(r.code, 1);
    assert.match(r.stderr, /config\.json/);
    assert.is(readFileSync(path.join(ws, 'config.json'), 'utf8'), before, 'nothing written on conflict');
    assert.is(mstore(ws, ['checkout', 'v001', '--force']).code, 0);
    const show1 = mstoreJson<{ files: { path: string; oid: string }[] }>(ws, ['show', 'v001']).files;
    // --force put back v001's config.json (its recorded sha256), over the local change
    assert.is(sha256File(path.join(ws, 'config.json')), show1.find((f) => f.path === 'config.json')!.oid, 'config.json is v001s again');
    assert.is.not(readFileSync(path.join(ws, 'config.json'), 'utf8'), before);
    assert.ok(existsSync(path.join(ws, 'new.txt')), 'untracked files are left alone');
    assert.ok(existsSync(path.join(ws, 'adapter', 'adapter_config.json')), 'deleted file restored');
    const model = show1.find((f) => f.path === 'model.safetensors')!;
    assert.is(sha256File(path.join(ws, 'model.safetensors')), model.oid);
    // only some files, by glob
    writeFileSync(path.join(ws, 'config.json'), '{"again":1}');
    assert.is(mstore(ws, ['checkout', 'v002', 'adapter/*']).code, 0);
    assert.is(readFileSync(path.join(ws, 'config.json'), 'utf8'), '{"again":1}');
  } finally {
    cleanup(ws);
  }
});

test('tags: create, list, resolve, delete; version names and latest are reserved', () => {
  const ws = tmpDir();
  try {
    mstore(ws, ['init']);
    writeModelDir(ws);
    mstoreJson(ws, ['commit', '-m', 'one']);
    assert.is(mstore(ws, ['tag', 'production', 'v001']).code, 0);
    assert.is(mstoreJson<{ version: string }>(ws, ['show', 'production']).version, 'v001');
    assert.is(mstore(ws, ['tag', 'production']).code, 1, 'existing tag');
    assert.is(mstore(ws, ['tag', 'v009']).code, 2);
    assert.is(mstore(ws, ['tag', 'latest']).code, 2);
    const tags = mstoreJson<{ name: string; isVersion: boolean }[]>(ws, ['tag', '--list']);
    assert.equal(tags.map((t) => [t.name, t.isVersion]), [['production', false], ['v001', true]]);
    assert.is(git(path.join(ws, '.mstore', 'git'), ['cat-file', '-t', 'production']).stdout.trim(), 'tag');
    assert.is(mstore(ws, ['tag', '-d', 'production']).code, 0);
    assert.is(mstore(ws, ['show', 'production']).code, 1);
  } finally {
    cleanup(ws);
  }
});

test('commit of some paths keeps the rest of latest', () => {
  const ws = tmpDir();
  try {
    mstore(ws, ['init']);
    writeModelDir(ws);
    mstoreJson(ws, ['commit', '-m', 'one']);
    writeFileSync(path.join(ws, 'config.json'), '{"not":"committed"}');
    writeFileSync(path.join(ws, 'adapter', 'adapter_config.json'), '{"r":16}');
    mstoreJson(ws, ['commit', 'adapter', '-m', 'adapter only']);
    const gitdir = path.join(ws, '.mstore', 'git');
    assert.is(git(gitdir, ['show', 'v002:adapter/adapter_config.json']).stdout, '{"r":16}');
    assert.match(git(gitdir, ['show', 'v002:config.json']).stdout, /qwen3/);
  } finally {
    cleanup(ws);
  }
});

test('review findings: pointer-shaped text, tag/line collisions, newly ignored files, no temporaries in refs', () => {
  const ws = tmpDir();
  const dest = tmpDir();
  try {
    mstore(ws, ['init']);
    writeModelDir(ws);
    // A text file whose content is a valid git-lfs pointer is content, not a pointer.
    const fake = `version https://git-lfs.github.com/spec/v1\noid sha256:${'b'.repeat(64)}\nsize 5\n`;
    writeFileSync(path.join(ws, 'pointer.txt'), fake);
    writeFileSync(path.join(ws, 'scratch.json'), '{"keep":"me"}');
    mstoreJson(ws, ['commit', '-m', 'one']);
    assert.is(mstore(ws, ['checkout', 'v001', '--to', dest]).code, 0);
    assert.is(readFileSync(path.join(dest, 'pointer.txt'), 'utf8'), fake);
    // A user tag and a line of the same name cannot both exist in git.
    assert.is(mstore(ws, ['tag', 'exp']).code, 0);
    writeFileSync(path.join(ws, 'notes.txt'), 'x');
    const r = mstore(ws, ['commit', '-m', 'on line exp', '--line', 'exp']);
    assert.is(r.code, 2, r.stderr);
    assert.match(r.stderr, /collides/);
    mstoreJson(ws, ['commit', '-m', 'on line other', '--line', 'other']);
    assert.is(mstore(ws, ['tag', 'other']).code, 2);
    // A file that becomes ignored is no longer tracked: a full checkout leaves it alone.
    writeFileSync(path.join(ws, '.mstoreignore'), 'scratch.json\n');
    mstoreJson(ws, ['commit', '-m', 'ignore scratch']);
    assert.is(mstore(ws, ['checkout', 'v002']).code, 0);
    assert.is(readFileSync(path.join(ws, 'scratch.json'), 'utf8'), '{"keep":"me"}');
    const tags = mstoreJson<{ name: string }[]>(ws, ['tag', '--list']).map((t) => t.name);
    assert.ok(tags.every((t) => !t.includes('tmp')), tags.join(' '));
  } finally {
    cleanup(ws);
    cleanup(dest);
  }
});

test('checkout never writes through a symlinked directory', () => {
  const ws = tmpDir();
  const outside = tmpDir();
  const dest = tmpDir();
  try {
    mstore(ws, ['init']);
    writeFileSync(path.join(ws, 'config.json'), '{}');
    symlinkSync(outside, path.join(ws, 'a'));
    mstoreJson(ws, ['commit', '-m', 'a is a link']);
    rmSync(path.join(ws, 'a'));
    mkdirSync(path.join(ws, 'a'));
    writeFileSync(path.join(ws, 'a', 'file.txt'), 'inside');
    mstoreJson(ws, ['commit', '-m', 'a is a directory']);
    // Back to v001 (a -> outside), then forward to v002: the tracked link is replaced, not followed.
    assert.is(mstore(ws, ['checkout', 'v001', '--force']).code, 0);
    assert.ok(lstatSync(path.join(ws, 'a')).isSymbolicLink());
    const r = mstore(ws, ['checkout', 'v002']);
    assert.is(r.code, 0, r.stderr);
    assert.ok(lstatSync(path.join(ws, 'a')).isDirectory());
    assert.is(readFileSync(path.join(ws, 'a', 'file.txt'), 'utf8'), 'inside');
    assert.equal(readdirSync(outside), [], 'nothing written outside the workspace');
    // A symlink planted in a --to target is refused, not followed.
    symlinkSync(outside, path.join(dest, 'a'));
    const t = mstore(ws, ['checkout', 'v002', '--to', dest]);
    assert.is(t.code, 1);
    assert.match(t.stderr, /symlink/);
    assert.equal(readdirSync(outside), []);
  } finally {
    cleanup(ws);
    cleanup(outside);
    cleanup(dest);
  }
});

test('an option that takes a value requires one: `checkout --to` alone never means "here"', () => {
  const ws = tmpDir();
  try {
    mstore(ws, ['init']);
    writeModelDir(ws);
    mstoreJson(ws, ['commit', '-m', 'one']);
    for (const args of [['checkout', 'v001', '--to'], ['commit', '-m'], ['tag', 'x', '-m'], ['commit', '-m', 'x', '--line']]) {
      const r = mstore(ws, args);
      assert.is(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^mstore: usage: /);
      assert.is(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
    }
    // -C chains like git's: -C a -C b is a/b.
    mkdirSync(path.join(ws, 'sub'));
    assert.is(mstoreJson<{ version: string }>(path.dirname(ws), ['-C', path.basename(ws), '-C', 'sub', 'show', 'v001']).version, 'v001');
  } finally {
    cleanup(ws);
  }
});

test.run();
