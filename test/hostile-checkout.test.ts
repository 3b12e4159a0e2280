/**
 * Hostile checkout destinations and interrupted checkouts (issue 20, items 4, 12, 13 and
 * `--to ''` of 14), through the real CLI and held to test/hostile-helpers.ts's contract:
 * - a destination inside a store (this one's, another's, a bare one; through symlinks, dangling
 *   ones included), or one holding a store that the checkout would write into, is refused: exit 2,
 *   one line, every store unchanged; `--to ''` is a usage error; `--to <workspace root>` is the
 *   in-place checkout;
 * - a checkout killed at moments spread over its run leaves temporaries that the next checkout
 *   into the same directory sweeps (only dead writers' temporaries named as tmpName names them);
 * - a checkout that fails on damaged content leaves the destination entirely as it was.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readSync, readdirSync, statSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { cleanup, layerTensors, mstore, spawnMstore, tmpDir, treeDigest, writeSafetensors } from './helpers.js';
import { assertIntact, expectRefusal, refusedUnchanged, storeBytes, versionContents } from './hostile-helpers.js';

const TMP = /^\.mstore-tmp-/;

/** Every path under `dir` (recursively) whose name starts `.mstore-tmp-`. */
function tempsUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const e of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (TMP.test(e.name)) out.push(p);
      else if (e.isDirectory() && e.name !== '.mstore') walk(p);
    }
  };
  walk('');
  return out.sort();
}

const obj = (m: Map<string, string>): Record<string, string> => Object.fromEntries([...m].sort());

/** A workspace with v001 (config.json, model.safetensors) and v002 (both changed, plus extra.txt). */
function twoVersions(tensors = layerTensors(2, 64, 256)): { ws: string; d1: Map<string, string>; d2: Map<string, string> } {
  const ws = tmpDir('mstore-hco-');
  assert.is(mstore(ws, ['init']).code, 0);
  writeFileSync(path.join(ws, 'config.json'), JSON.stringify({ version: 1 }));
  writeSafetensors(path.join(ws, 'model.safetensors'), tensors);
  let r = mstore(ws, ['commit', '-m', 'one']);
  assert.is(r.code, 0, r.stderr);
  const d1 = treeDigest(ws);
  writeFileSync(path.join(ws, 'config.json'), JSON.stringify({ version: 2 }));
  writeSafetensors(path.join(ws, 'model.safetensors'), tensors.map((t) => ({ ...t, seed: t.seed + 500 })));
  writeFileSync(path.join(ws, 'extra.txt'), 'only in v002\n');
  r = mstore(ws, ['commit', '-m', 'two']);
  assert.is(r.code, 0, r.stderr);
  return { ws, d1, d2: treeDigest(ws) };
}

/** A pid that belonged to a process which has exited. */
function deadPid(): number {
  const r = spawnSync('true');
  assert.ok(r.pid > 0);
  return r.pid;
}

// ---------------------------------------------------------------- #20.4, #20.14: destinations

test('20.4: a destination inside this store, another store or a bare store is refused (exit 2), every store unchanged', () => {
  const { ws } = twoVersions();
  const other = tmpDir('mstore-hco-other-');
  const bareParent = tmpDir('mstore-hco-bare-');
  const bare = path.join(bareParent, 'bare');
  try {
    assert.is(mstore(other, ['init']).code, 0);
    assert.is(mstore(bareParent, ['init', '--bare', bare]).code, 0);
    symlinkSync(path.join(ws, '.mstore', 'git'), path.join(ws, 'alias'));
    symlinkSync(path.join(ws, '.mstore'), path.join(ws, 'storelink'));
    symlinkSync(path.join(ws, '.mstore', 'newdir'), path.join(ws, 'dangling'));
    const revs = ['v001', 'v002'];
    const before = versionContents(ws, revs);
    /** One refusal: exit 2, one line, the store's bytes unchanged, nothing created (fsck and versions checked at the end). */
    const refused = (what: string, args: string[]): void => {
      const bytes = storeBytes(ws);
      expectRefusal(mstore(ws, args), 2, /store/, what);
      assert.is(storeBytes(ws), bytes, `${what}: the store's files are unchanged`);
    };
    const cases: [string, string[]][] = [
      ['--to .mstore --force', ['checkout', 'v001', '--to', '.mstore', '--force']],
      ['--to .mstore/x', ['checkout', 'v001', '--to', '.mstore/x']],
      ['--to .mstore/git/objects --force', ['checkout', 'v001', '--to', '.mstore/git/objects', '--force']],
      ['--to a symlink to .mstore/git', ['checkout', 'v001', '--to', 'alias', '--force']],
      ['--to below a symlink to .mstore, not yet existing', ['checkout', 'v001', '--to', 'storelink/new/deeper']],
      ['--to a dangling symlink into .mstore', ['checkout', 'v001', '--to', 'dangling']],
      ['--to the absolute path of .mstore', ['checkout', 'v001', '--to', path.join(ws, '.mstore'), '--force']],
    ];
    for (const [what, args] of cases) {
      refused(what, args);
      assert.not.ok(existsSync(path.join(ws, '.mstore', 'x')), `${what}: nothing created in the store`);
      assert.not.ok(existsSync(path.join(ws, '.mstore', 'newdir')), `${what}: nothing created through the dangling link`);
      assert.not.ok(existsSync(path.join(ws, '.mstore', 'new')), `${what}: nothing created through the link`);
    }
    // Another workspace's store and a bare store: refused, and they are unchanged too.
    const otherBytes = storeBytes(other);
    refused("another store's .mstore", ['checkout', 'v001', '--to', path.join(other, '.mstore'), '--force']);
    refused("below another store's .mstore", ['checkout', 'v001', '--to', path.join(other, '.mstore', 'packs', 'x')]);
    assert.is(storeBytes(other), otherBytes, "the other store's files are unchanged");
    const bareBefore = obj(treeDigest(bare));
    refused('a bare store', ['checkout', 'v001', '--to', bare, '--force']);
    refused('inside a bare store', ['checkout', 'v001', '--to', path.join(bare, 'git', 'refs')]);
    assert.equal(obj(treeDigest(bare)), bareBefore, "the bare store's files are unchanged");
    // The whole contract once more, with fsck and every version checked out byte for byte.
    refusedUnchanged(ws, revs, '--to .mstore/git --force', 2, /store/, () => mstore(ws, ['checkout', 'v002', '--to', '.mstore/git', '--force']));
    assertIntact(ws, before, 'after every refusal');
  } finally {
    cleanup(ws);
    cleanup(other);
    cleanup(bareParent);
  }
});

test('20.4: a destination holding a store the version would write into is refused (exit 2), that store unchanged', () => {
  const ws = tmpDir('mstore-hco-nest-');
  const dest = tmpDir('mstore-hco-nest-out-');
  try {
    assert.is(mstore(ws, ['init']).code, 0);
    mkdirSync(path.join(ws, 'store'));
    writeFileSync(path.join(ws, 'store', 'config.json'), '{"not": "a store config"}\n');
    writeFileSync(path.join(ws, 'weights.bin'), 'w');
    assert.is(mstore(ws, ['commit', '-m', 'has store/config.json']).code, 0);
    assert.is(mstore(dest, ['init', '--bare', path.join(dest, 'store')]).code, 0);
    const before = obj(treeDigest(path.join(dest, 'store')));
    const line = refusedUnchanged(ws, ['v001'], 'a bare store below --to', 2, /store/, () => mstore(ws, ['checkout', 'v001', '--to', dest, '--force']));
    assert.match(line, path.join(dest, 'store'), 'the line names the store in the way');
    assert.equal(obj(treeDigest(path.join(dest, 'store'))), before, 'the store below --to is unchanged');
    assert.not.ok(existsSync(path.join(dest, 'weights.bin')), 'nothing was written');
  } finally {
    cleanup(ws);
    cleanup(dest);
  }
});

test("20.14: --to '' is a usage error (exit 2), not an in-place checkout", () => {
  const { ws, d2 } = twoVersions();
  try {
    const line = refusedUnchanged(ws, ['v001', 'v002'], "--to ''", 2, /--to/, () => mstore(ws, ['checkout', 'v001', '--to', '', '--force']));
    assert.ok(line.length > 0);
    assert.equal(obj(treeDigest(ws)), obj(d2), 'the workspace is still v002');
  } finally {
    cleanup(ws);
  }
});

test('20.4: --to the workspace root (or a symlink to it) is the in-place checkout: tracked files removed, stat cache updated', () => {
  const { ws, d1, d2 } = twoVersions();
  const links = tmpDir('mstore-hco-links-');
  try {
    let r = mstore(ws, ['checkout', 'v001', '--to', ws]);
    assert.is(r.code, 0, r.stderr);
    assert.equal(obj(treeDigest(ws)), obj(d1), 'the workspace is v001 (extra.txt of v002 removed)');
    const st = mstore(ws, ['status', '--json']);
    assert.is(st.code, 0, st.stderr);
    const s = JSON.parse(st.stdout) as { added: string[]; modified: string[]; deleted: string[] };
    assert.equal([s.added, s.modified.sort(), s.deleted], [[], ['config.json', 'model.safetensors'], ['extra.txt']], 'status: v001 against latest (v002)');
    symlinkSync(ws, path.join(links, 'ws'));
    r = mstore(ws, ['checkout', 'v002', '--to', path.join(links, 'ws')]);
    assert.is(r.code, 0, r.stderr);
    assert.equal(obj(treeDigest(ws)), obj(d2), 'the workspace is v002 again');
  } finally {
    cleanup(ws);
    cleanup(links);
  }
});

// ---------------------------------------------------------------- #20.12: sweeping

test('20.12: checkout --to DIR and in place sweep dead writers\' temporaries (both name formats), keep live and foreign ones', () => {
  const { ws, d1 } = twoVersions();
  const out = tmpDir('mstore-hco-sweep-');
  try {
    const dead = deadPid();
    const live = process.pid;
    const dir = path.join(out, 'dest');
    mkdirSync(dir);
    const names = {
      deadOld: `.mstore-tmp-model.safetensors.tmp-${dead}-0123abcd`,
      deadNew: `.mstore-tmp-${dead}-89abcdef`,
      liveNew: `.mstore-tmp-${live}-0badf00d`,
      liveOld: `.mstore-tmp-config.json.tmp-${live}-0badf00d`,
      foreign: '.mstore-tmp-notes.txt',
    };
    for (const n of Object.values(names)) writeFileSync(path.join(dir, n), 'x');
    const r = mstore(ws, ['checkout', 'v001', '--to', dir]);
    assert.is(r.code, 0, r.stderr);
    assert.equal(tempsUnder(dir), [names.foreign, names.liveNew, names.liveOld].sort(), '--to DIR: dead temporaries swept, live and foreign kept');

    // In place: the same rule (the workspace is at v002).
    for (const n of Object.values(names)) writeFileSync(path.join(ws, n), 'x');
    const c = mstore(ws, ['checkout', 'v001']);
    assert.is(c.code, 0, c.stderr);
    assert.equal(tempsUnder(ws), [names.foreign, names.liveNew, names.liveOld].sort(), 'in place: dead temporaries swept, live and foreign kept');
    for (const n of [names.foreign, names.liveNew, names.liveOld]) d1.set(n, treeDigest(ws).get(n)!);
    assert.equal(obj(treeDigest(ws)), obj(d1));
  } finally {
    cleanup(ws);
    cleanup(out);
  }
});

test('20.12: kill -9 of checkout --to DIR at spread-out moments; the next checkout into DIR sweeps what it left', async () => {
  // 8 BF16 tensors of 1024 x 2048: 32 MiB, so that writing takes a good part of the run.
  const { ws } = twoVersions(layerTensors(8, 1024, 2048));
  const out = tmpDir('mstore-hco-kill-');
  try {
    // How long one uninterrupted checkout takes here, node's start included.
    const t0 = performance.now();
    const full = mstore(ws, ['checkout', 'v001', '--to', path.join(out, 'full')]);
    const fullMs = performance.now() - t0;
    assert.is(full.code, 0, full.stderr);
    const want = obj(treeDigest(path.join(out, 'full')));
    // Kills spread over the second half of a run (the first is mostly node's start-up and
    // planning), then one that waits for a temporary to appear: at least one lands mid-write.
    const KILLS = 6;
    let withTemps = 0;
    const moments: string[] = [];
    for (let i = 0; i <= KILLS; i++) {
      const dir = path.join(out, `k${i}`);
      const polled = i === KILLS;
      const at = polled ? 0 : Math.round(fullMs * (0.4 + (0.6 * i) / (KILLS - 1)));
      const child = spawnMstore(ws, ['checkout', 'v001', '--to', dir]);
      const exited = new Promise<NodeJS.Signals | null>((res) => child.on('close', (_c, sig) => res(sig)));
      const timer = polled
        ? setInterval(() => existsSync(dir) && tempsUnder(dir).length && child.kill('SIGKILL'), 2)
        : setTimeout(() => child.kill('SIGKILL'), at);
      const sig = await exited;
      clearTimeout(timer);
      const left = existsSync(dir) ? tempsUnder(dir) : [];
      moments.push(`${polled ? 'at its first temporary' : `${at} ms`}: ${sig ?? 'finished'}, ${left.length} temporaries`);
      if (sig === 'SIGKILL' && left.length) withTemps++;
      const again = mstore(ws, ['checkout', 'v001', '--to', dir]);
      assert.is(again.code, 0, `after a kill at ${at} ms: ${again.stderr}`);
      assert.equal(tempsUnder(dir), [], `after a kill at ${at} ms (${left.join(', ')}), the next checkout swept the temporaries`);
      assert.equal(obj(treeDigest(dir)), want, `after a kill at ${at} ms: v001 byte for byte`);
    }
    assert.ok(withTemps >= 1, `no kill landed while a temporary existed (full checkout ${fullMs.toFixed(0)} ms; ${moments.join('; ')})`);
    process.stdout.write(`\n  checkout kills (full run ${fullMs.toFixed(0)} ms): ${moments.join('; ')}\n`);
  } finally {
    cleanup(ws);
    cleanup(out);
  }
});

// ---------------------------------------------------------------- #20.13: all or nothing

/** Every pack file of the store. */
function packs(ws: string): Set<string> {
  const root = path.join(ws, '.mstore', 'packs');
  const out = new Set<string>();
  for (const d of readdirSync(root)) for (const f of readdirSync(path.join(root, d))) out.add(path.join(root, d, f));
  return out;
}

/** Inverts the byte in the middle of `file` (inside a chunk's data for a pack of one file's tensors). */
function flipMiddleByte(file: string): void {
  chmodSync(file, statSync(file).mode | 0o200);
  const fd = openSync(file, 'r+');
  try {
    const at = Math.floor(statSync(file).size / 2);
    const b = Buffer.alloc(1);
    assert.is(readSync(fd, b, 0, 1, at), 1);
    b[0] ^= 0xff;
    writeSync(fd, b, 0, 1, at);
  } finally {
    closeSync(fd);
  }
}

test('20.13: a checkout that meets a damaged chunk leaves the workspace entirely at the old version, and a --to DIR untouched', () => {
  const ws = tmpDir('mstore-hco-dmg-');
  const out = tmpDir('mstore-hco-dmg-out-');
  try {
    assert.is(mstore(ws, ['init']).code, 0);
    const tensors = layerTensors(4, 256, 512);
    writeFileSync(path.join(ws, 'config.json'), JSON.stringify({ version: 1 }));
    writeSafetensors(path.join(ws, 'model.safetensors'), tensors);
    assert.is(mstore(ws, ['commit', '-m', 'one']).code, 0);
    const v001Packs = packs(ws);
    writeFileSync(path.join(ws, 'config.json'), JSON.stringify({ version: 2 }));
    writeSafetensors(path.join(ws, 'model.safetensors'), tensors.map((t) => ({ ...t, seed: t.seed + 500 })));
    assert.is(mstore(ws, ['commit', '-m', 'two']).code, 0);
    const d2 = treeDigest(ws);
    // Damage v001's model data only (the pack its commit wrote; v002's tensors are elsewhere).
    assert.is(v001Packs.size, 1, 'v001 wrote one pack');
    flipMiddleByte([...v001Packs][0]);
    const ok = mstore(ws, ['checkout', 'v002', '--to', path.join(out, 'v002')]);
    assert.is(ok.code, 0, `v002 is intact: ${ok.stderr}`);

    const bytes = storeBytes(ws);
    const r = mstore(ws, ['checkout', 'v001']);
    expectRefusal(r, 1, /model\.safetensors: chunk [0-9a-f]{64} in pack \S+ is damaged/, 'in-place checkout of a damaged version');
    assert.equal(obj(treeDigest(ws)), obj(d2), 'the workspace is entirely v002 (config.json too), no temporaries');
    assert.equal(tempsUnder(ws), [], 'no temporaries left');
    assert.is(storeBytes(ws), bytes, 'the store is unchanged');
    const st = mstore(ws, ['status', '--json']);
    assert.is(st.code, 0, st.stderr);
    const s = JSON.parse(st.stdout) as { added: string[]; modified: string[]; deleted: string[] };
    assert.equal([s.added, s.modified, s.deleted], [[], [], []], 'status: clean at v002');

    // --to DIR holding an older copy: left exactly as it was.
    const dir = path.join(out, 'dest');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'config.json'), 'mine');
    const r2 = mstore(ws, ['checkout', 'v001', '--to', dir, '--force']);
    expectRefusal(r2, 1, /model\.safetensors/, 'checkout --to of a damaged version');
    assert.equal([...treeDigest(dir).keys()], ['config.json'], 'only the file that was there');
    assert.is(spawnSync('cat', [path.join(dir, 'config.json')], { encoding: 'utf8' }).stdout, 'mine', 'config.json untouched');
  } finally {
    cleanup(ws);
    cleanup(out);
  }
});

test.run();
