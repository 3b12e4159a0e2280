/**
 * Hostile retention policies (issue 20, item 6): a `prune` policy whose every rule keeps
 * nothing (`--keep-last 0`, `--keep-within 0d`, both) is read the way restic's `forget` reads
 * it, as an empty policy: refused with exit 2 and one line naming the option, plan or
 * --execute, the store byte for byte unchanged. A zero rule beside a rule that keeps
 * something is simply that rule (restic: `--keep-last 0 --keep-daily 2` keeps 2 daily).
 * Every refusal goes through test/hostile-helpers.ts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { cleanup, mstore, mstoreJson, tmpDir, writeModelDir } from './helpers.js';
import { refusedUnchanged } from './hostile-helpers.js';

interface PlanJson {
  keep: { version: string; reasons: string[] }[];
  remove: { version: string }[];
}

const DATES = ['2025-01-01T00:00:00Z', '2025-01-10T00:00:00Z', '2025-01-20T00:00:00Z'];
const REVS = ['v001', 'v002', 'v003'];

/** A store with three versions ten days apart, and a backup store so that --execute could run. */
function threeVersions(): string {
  const ws = tmpDir('mstore-hostile-retention-');
  writeModelDir(ws, { step: 1 });
  const run = (args: string[], env: Record<string, string> = {}): void => {
    const r = mstore(ws, args, env);
    assert.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  };
  run(['init']);
  DATES.forEach((d, i) => {
    writeFileSync(path.join(ws, 'notes.txt'), `version ${i + 1}`);
    run(['commit', '-m', `v${i + 1}`], { MSTORE_NOW: d });
  });
  run(['backup', 'add', 'disk2', path.join(ws, '..', `${path.basename(ws)}-backup`)]);
  return ws;
}

const ws = threeVersions();

const KEEPS_NOTHING: { args: string[]; names: RegExp }[] = [
  { args: ['--keep-last', '0'], names: /--keep-last 0/ },
  { args: ['--keep-within', '0d'], names: /--keep-within 0d/ },
  { args: ['--keep-within', '0y0m0d0h'], names: /--keep-within 0y0m0d0h/ },
  { args: ['--keep-last', '0', '--keep-within', '0h'], names: /--keep-last 0.*--keep-within 0h/ },
  { args: ['--keep-last', '0', '--line', 'main'], names: /--keep-last 0/ },
];

for (const { args, names } of KEEPS_NOTHING) {
  for (const mode of [[], ['--execute'], ['--execute', '--no-backup']]) {
    const what = `prune ${[...args, ...mode].join(' ')}`;
    test(`${what}: keeps nothing, refused like an empty policy`, () => {
      const line = refusedUnchanged(ws, mode.includes('--no-backup') ? REVS : [], what, 2, names, () => mstore(ws, ['prune', ...args, ...mode]));
      assert.match(line, /keeps nothing/, `${what}: says why`);
    });
  }
}

test('prune --keep-last -1 and --keep-last 1.5: not a count, refused naming the option', () => {
  for (const n of ['-1', '1.5', 'abc']) {
    refusedUnchanged(ws, [], `prune --keep-last ${n}`, 2, /--keep-last/, () => mstore(ws, ['prune', '--keep-last', n, '--execute', '--no-backup']));
  }
});

test('a zero rule beside one that keeps something is that rule alone (restic: --keep-last 0 --keep-daily 2)', () => {
  const p = mstoreJson<PlanJson>(ws, ['prune', '--keep-last', '0', '--keep-within', '15d']);
  assert.equal(p.keep.map((v) => v.version), ['v003', 'v002']);
  assert.equal(p.keep[0].reasons, ['within 15d']);
  assert.equal(p.remove.map((v) => v.version), ['v001']);
  const q = mstoreJson<PlanJson>(ws, ['prune', '--keep-last', '1', '--keep-within', '0d']);
  assert.equal(q.keep.map((v) => v.version), ['v003']);
  assert.equal(q.keep[0].reasons, ['last 1']);
});

test.after(() => {
  cleanup(ws);
  cleanup(path.join(ws, '..', `${path.basename(ws)}-backup`));
});

test.run();
