/**
 * src/format/git-links.ts (docs/format.md §7.8): the links of trees (every mode, gitlinks
 * included), commits and tags, on objects git itself wrote; and what bundle.ts refuses on top.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { GITLINK_MODE, framedObjectLinks, objectLinks, parseTree, parseTreeFrom, sha1Hex, unwrapObject, wrapObject } from '../src/format/git-links.js';
import { bundleObjectLinks } from '../src/format/bundle.js';
import { cleanup, tmpDir } from './helpers.js';

const dir = tmpDir('mstore-git-links-');
function git(args: string[], input?: string): string {
  const r = spawnSync('git', [`--git-dir=${dir}`, ...args], { input, encoding: 'latin1', env: { ...process.env, GIT_AUTHOR_NAME: 'A', GIT_AUTHOR_EMAIL: 'a@b', GIT_COMMITTER_NAME: 'A', GIT_COMMITTER_EMAIL: 'a@b', GIT_AUTHOR_DATE: '1700000000 +0100', GIT_COMMITTER_DATE: '1700000000 +0100' } });
  if (r.status !== 0) throw new Error(`git ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}
git(['init', '--bare', '-q']);
/** An object as git stores it (framing included), read back from git. */
function raw(id: string): Buffer {
  const type = git(['cat-file', '-t', id]).trim();
  return wrapObject(type, Buffer.from(git(['cat-file', type, id]), 'latin1'));
}

const blob = git(['hash-object', '-w', '--stdin'], 'weights\n').trim();
const sub = git(['mktree'], '').trim(); // the empty tree
const fakeCommit = '1234567890abcdef1234567890abcdef12345678'; // a submodule's commit: not in this repository
const tree = git(['mktree'], [`100644 blob ${blob}\ta.txt`, `100755 blob ${blob}\trun.sh`, `120000 blob ${blob}\tlink`, `040000 tree ${sub}\tdir`, `${GITLINK_MODE} commit ${fakeCommit}\tvendor`].join('\n') + '\n').trim();
const root = git(['commit-tree', tree, '-m', 'first']).trim();
const second = git(['commit-tree', tree, '-m', 'second']).trim();
// A message line that looks like a header must not count as a parent.
const merge = git(['commit-tree', tree, '-p', root, '-p', second, '-m', `merge\n\nparent ${blob}`]).trim();
const tag = git(['mktag'], `object ${tree}\ntype tree\ntag t1\ntagger A <a@b> 1700000000 +0100\n\nthe tree\n`).trim();

test('tree: every mode, in git order, a gitlink as a commit (bytes from git itself)', () => {
  const data = raw(tree);
  assert.is(sha1Hex(data), tree, 'framing as git hashes it');
  const links = framedObjectLinks(data);
  const sorted = ['a.txt', 'dir', 'link', 'run.sh', 'vendor'];
  assert.equal(links.map((l) => l.via), sorted);
  const by = new Map(links.map((l) => [l.via, l]));
  assert.equal(by.get('a.txt'), { oid: blob, type: 'blob', via: 'a.txt', mode: '100644' });
  assert.equal(by.get('run.sh'), { oid: blob, type: 'blob', via: 'run.sh', mode: '100755' });
  assert.equal(by.get('link'), { oid: blob, type: 'blob', via: 'link', mode: '120000' });
  assert.equal(by.get('dir'), { oid: sub, type: 'tree', via: 'dir', mode: '40000' });
  assert.equal(by.get('vendor'), { oid: fakeCommit, type: 'commit', via: 'vendor', mode: GITLINK_MODE });
});

test('commit: its tree, then its parents in order; the message is not read', () => {
  assert.equal(framedObjectLinks(raw(root)), [{ oid: tree, type: 'tree', via: 'tree' }]);
  assert.equal(framedObjectLinks(raw(merge)), [
    { oid: tree, type: 'tree', via: 'tree' },
    { oid: root, type: 'commit', via: 'parent' },
    { oid: second, type: 'commit', via: 'parent' },
  ]);
});

test('tag: its object, with the type it names', () => {
  assert.equal(framedObjectLinks(raw(tag)), [{ oid: tree, type: 'tree', via: 'object' }]);
  assert.equal(framedObjectLinks(raw(blob)), []);
});

test('malformed objects are errors naming the problem', () => {
  const entry = (mode: string, name: string) => Buffer.concat([Buffer.from(`${mode} ${name}\0`), Buffer.alloc(20, 1)]);
  assert.throws(() => objectLinks('tree', entry('100644', 'a').subarray(0, 20)), /truncated tree entry/);
  assert.throws(() => objectLinks('tree', entry('100664', 'a')), /mode 100664/);
  assert.throws(() => objectLinks('commit', Buffer.from(`parent ${root}\ntree ${tree}\n`)), /tree line/);
  assert.throws(() => objectLinks('commit', Buffer.from(`tree ${tree}\n\nmessage\n`)), /author and committer/);
  assert.throws(() => objectLinks('tag', Buffer.from(`type commit\nobject ${root}\n`)), /object and type/);
  assert.throws(() => framedObjectLinks(Buffer.from('tree 5\0abc')), /header says 5 bytes/);
  const u = unwrapObject(wrapObject('blob', Buffer.from('x')));
  assert.ok(typeof u !== 'string' && u.type === 'blob' && u.content.toString() === 'x');
});

test('bundle rules on top: a gitlink, a name a version cannot hold (path-names.ts) or an unsorted name is refused, a plain tree passes', () => {
  const o = unwrapObject(raw(tree));
  if (typeof o === 'string') throw new Error(o);
  assert.throws(() => bundleObjectLinks('tree', o.content), /'vendor' has mode 160000/);
  const plain = git(['mktree'], `100644 blob ${blob}\ta.txt\n040000 tree ${sub}\tdir\n`).trim();
  const p = unwrapObject(raw(plain));
  if (typeof p === 'string') throw new Error(p);
  assert.equal(bundleObjectLinks('tree', p.content).map((l) => l.type), ['blob', 'tree']);
  const entry = (name: string) => Buffer.concat([Buffer.from(`100644 ${name}\0`), Buffer.from(blob, 'hex')]);
  assert.throws(() => bundleObjectLinks('tree', Buffer.concat([entry('b'), entry('a')])), /not sorted/);
  assert.throws(() => bundleObjectLinks('tree', entry('.GIT')), /not allowed/);
  // the rule of path-names.ts, the one commit and checkout keep
  assert.throws(() => bundleObjectLinks('tree', entry('a\\b.txt')), /'a\\\\b.txt' is not allowed: a backslash/);
  assert.throws(() => bundleObjectLinks('tree', entry('git~1')), /not allowed: a name that is .git on Windows/);
  assert.throws(() => bundleObjectLinks('tree', entry('.mstore-tmp-1-abcdef12')), /reserved for mstore's temporary files/);
  assert.throws(() => bundleObjectLinks('tree', entry('x'.repeat(256))), /256 bytes/);
  const record = Buffer.concat([Buffer.from('40000 .mstore\0'), Buffer.from(sub, 'hex')]);
  assert.equal(bundleObjectLinks('tree', record).map((l) => l.via), ['.mstore'], "the version record's folder");
  assert.throws(() => bundleObjectLinks('tree', entry('.mstore')), /reserved for the store/, 'a file named .mstore');
  assert.ok(objectLinks('tree', Buffer.concat([entry('b'), entry('a')])).length === 2, 'order is a bundle rule, not a link rule');
});

test.after(() => cleanup(dir));

test('parseTreeFrom: reusing a similar tree gives exactly what parsing the tree alone gives', () => {
  // Seeded: a thousand edits of trees that share leading and trailing bytes with the last one
  // (an entry added, removed or changed, names that share prefixes, a cut or garbled middle).
  let seed = 12345;
  const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;
  const entry = (mode: string, name: string, id: number): Buffer =>
    Buffer.concat([Buffer.from(`${mode} ${name}\0`, 'latin1'), Buffer.from(id.toString(16).padStart(40, '0'), 'hex')]);
  const modes = ['100644', '100755', '120000', '40000'];
  let names = Array.from({ length: 8 }, (_, i) => `f${String(i).padStart(3, '0')}.json`);
  let ids = names.map((_, i) => i + 1);
  const bytes = (): Buffer => Buffer.concat(names.map((n, i) => entry(modes[ids[i] % 4], n, ids[i])));
  let prior = parseTreeFrom(bytes());
  let reused = 0;
  for (let round = 0; round < 1000; round++) {
    const op = rnd(4);
    const at = rnd(names.length + 1);
    if (op === 0 || names.length < 2) {
      names.splice(at, 0, `f${String(rnd(1000)).padStart(3, '0')}${rnd(2) ? '.json' : ''}`);
      ids.splice(at, 0, rnd(1 << 30) + 1);
    } else if (op === 1) {
      names.splice(Math.min(at, names.length - 1), 1);
      ids.splice(Math.min(at, ids.length - 1), 1);
    } else ids[Math.min(at, ids.length - 1)] = rnd(1 << 30) + 1;
    let content = bytes();
    if (rnd(20) === 0) content = Buffer.concat([content.subarray(0, rnd(content.length)), Buffer.from('garbage')]);
    let alone: ReturnType<typeof parseTree> | Error;
    try {
      alone = parseTree(content);
    } catch (e) {
      alone = e as Error;
    }
    if (alone instanceof Error) {
      assert.throws(() => parseTreeFrom(content, prior), undefined, `round ${round}: a malformed tree fails with reuse too`);
      continue;
    }
    const next = parseTreeFrom(content, prior);
    assert.equal(next.entries, alone, `round ${round}: same entries`);
    assert.equal(next.starts.length, alone.length);
    for (let i = 0; i < alone.length; i++) if (prior.entries.includes(next.entries[i])) reused++;
    prior = next;
  }
  assert.ok(reused > 1000, `entries were reused (${reused}), not parsed again`);
});

test.run();
