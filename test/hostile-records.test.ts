/**
 * Damaged version records (issue 20, item 11), through the real CLI: one git object of v002
 * (its version.json, root tree, commit, a file's blob) damaged or missing in a store of three
 * versions. log lists every other version and exits 1 with one line naming the object and
 * the version; show and checkout of v002 name the object and the version; the other versions
 * check out; nothing is written.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { deflateSync } from 'node:zlib';
import { chmodSync, cpSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { cleanup, git, mstore, tmpDir, type RunResult } from './helpers.js';
import { expectRefusal, storeBytes, versionContents } from './hostile-helpers.js';

function ok(cwd: string, args: string[]): RunResult {
  const r = mstore(cwd, args);
  assert.is(r.code, 0, `mstore ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r;
}

/** The pristine store: v001..v003, each a text file, a binary file (lfs) and a symlink. */
const pristine = tmpDir('mstore-records-');
ok(pristine, ['init']);
for (let i = 1; i <= 3; i++) {
  // A link target of its own per version, so that its blob is v002's alone.
  rmSync(path.join(pristine, 'latest.bin'), { force: true });
  symlinkSync(`model.bin.${i}`, path.join(pristine, 'latest.bin'));
  writeFileSync(path.join(pristine, 'config.json'), `{"step": ${i}}\n`);
  writeFileSync(path.join(pristine, 'model.bin'), Buffer.alloc(60_000 + i, i));
  ok(pristine, ['commit', '-m', `step ${i}`]);
}
const gitdir = (ws: string): string => path.join(ws, '.mstore', 'git');
const contents = versionContents(pristine, ['v001', 'v003']);

function objectFile(ws: string, oid: string): string {
  return path.join(gitdir(ws), 'objects', oid.slice(0, 2), oid.slice(2));
}

type Damage = 'garbage' | 'other-content' | 'missing';

/** A copy of the pristine store with `spec` (a git revision such as v002:config.json) damaged; returns the workspace and the object id. */
function damaged(spec: string, how: Damage): { ws: string; oid: string } {
  const ws = tmpDir('mstore-records-case-');
  cpSync(pristine, ws, { recursive: true, verbatimSymlinks: true });
  const oid = git(gitdir(ws), ['rev-parse', spec]).stdout.trim();
  assert.match(oid, /^[0-9a-f]{40}$/, spec);
  const file = objectFile(ws, oid);
  chmodSync(file, 0o644);
  if (how === 'missing') unlinkSync(file);
  else if (how === 'garbage') writeFileSync(file, readFileSync(file).subarray(0, 9));
  else writeFileSync(file, deflateSync(Buffer.from('blob 5\0hello')));
  return { ws, oid };
}

function logVersions(r: RunResult): string[] {
  return [...r.stdout.matchAll(/^(v[0-9]+) /gm)].map((m) => m[1]);
}

const CASES: { spec: string; role: string; how: Damage; logOk: boolean }[] = [
  { spec: 'v002:.mstore/version.json', role: 'version.json', how: 'garbage', logOk: false },
  { spec: 'v002:.mstore/version.json', role: 'version.json', how: 'missing', logOk: false },
  { spec: 'v002^{tree}', role: 'root tree', how: 'other-content', logOk: false },
  { spec: 'v002:.mstore', role: '.mstore tree', how: 'garbage', logOk: false },
  { spec: 'v002^{commit}', role: 'commit', how: 'garbage', logOk: false },
  { spec: 'v002:config.json', role: 'config.json blob', how: 'other-content', logOk: true },
  { spec: 'v002:model.bin', role: 'pointer blob', how: 'garbage', logOk: true },
  { spec: 'v002:latest.bin', role: 'symlink blob', how: 'missing', logOk: true },
];

for (const c of CASES) {
  test(`${c.role} of v002 ${c.how === 'missing' ? 'missing' : `damaged (${c.how})`}: log lists the others, show and checkout name the object and the version`, () => {
    const { ws, oid } = damaged(c.spec, c.how);
    const out = tmpDir('mstore-records-out-');
    try {
      const bytes = storeBytes(ws);
      const names = new RegExp(`v002.*${oid}|${oid}.*v002`);
      const log = mstore(ws, ['log']);
      if (c.logOk) {
        assert.is(log.code, 0, `log: ${log.stderr}`);
        assert.equal(logVersions(log), ['v003', 'v002', 'v001'], 'log lists every version');
      } else {
        expectRefusal(log, 1, names, `log with the ${c.role} of v002 damaged`);
        assert.equal(logVersions(log), ['v003', 'v001'], 'log lists the other versions');
        const json = mstore(ws, ['log', '--json']);
        expectRefusal(json, 1, names, 'log --json');
        assert.equal((JSON.parse(json.stdout) as { version: string }[]).map((e) => e.version), ['v003', 'v001'], 'log --json lists the others');
      }
      expectRefusal(mstore(ws, ['show', 'v002']), 1, names, `show v002 (${c.role})`);
      expectRefusal(mstore(ws, ['checkout', 'v002', '--to', path.join(out, 'v002')]), 1, names, `checkout v002 (${c.role})`);
      const again = versionContents(ws, ['v001', 'v003']);
      assert.equal(again, contents, 'v001 and v003 still check out byte for byte');
      assert.is(storeBytes(ws), bytes, 'nothing was written');
    } finally {
      cleanup(out);
      cleanup(ws);
    }
  });
}

test.after(() => cleanup(pristine));
test.run();
