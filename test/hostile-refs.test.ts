/**
 * Hostile input, class "Refs, tags, restore and messages" (docs/safety.md), issues 17 and 20:
 *   - a ref update is all or none: a push whose last ref clashes with a ref on the box (a
 *     file where a folder of refs is needed) moves nothing and leaves the ref history as it was;
 *   - refs are read by their exact full name: a ref `refs/heads/refs/tags/v004` never stands in
 *     for `refs/tags/v004`, and names that would shadow another namespace are refused at the door
 *     (400 with the rule from `mstore serve`, one line from the client);
 *   - names the rule lets through are names the writer takes: `x.`, `x.lock/y`, a part over
 *     255 bytes get 400 with the rule, never 500;
 *   - the number of refs a store holds is capped (config `maxRefs`);
 *   - restore brings back a whole group of refs or none, with one line naming the clash;
 *   - tag names get their real rule, an ambiguous commit-id prefix is called ambiguous;
 *   - the path transport's compare-and-swap, deterministically: the remote moves between a
 *     push's read of its refs and its ref update, and the update is refused.
 * Every refusal is held to test/hostile-helpers.ts's contract. Servers listen on 127.0.0.1 only.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { CLI, cleanup, git, layerTensors, listeningUrl, mstore, tmpDir, writeModelDir, type RunResult } from './helpers.js';
import { assertIntact, expectRefusal, refusedUnchanged, storeBytes, versionContents } from './hostile-helpers.js';
import { Store } from '../src/repo/store.js';
import { StoreRemote } from '../src/remote/transport/path.js';
import { push } from '../src/remote/push.js';
import type { Remote } from '../src/remote/remote.js';
import { MstoreError } from '../src/lib/errors.js';

const TOKEN = 'push-token-0123456789abcdef';
const small = { tensors: layerTensors(2, 64, 64) };

function ok(cwd: string, args: string[], env: Record<string, string> = {}): RunResult {
  const r = mstore(cwd, args, env);
  assert.is(r.code, 0, `mstore ${args.join(' ')}: ${r.stdout}${r.stderr}`);
  return r;
}

/** A workspace with `n` versions on the default line (small models, each different). */
function workspace(root: string, name: string, n: number): string {
  const ws = path.join(root, name);
  mkdirSync(ws, { recursive: true });
  ok(ws, ['init']);
  for (let i = 1; i <= n; i++) {
    writeModelDir(ws, { ...small, step: i });
    ok(ws, ['commit', '-m', `v${i}`]);
  }
  return ws;
}

function refsOf(gitdir: string): string {
  return git(gitdir, ['for-each-ref', '--format=%(refname) %(objectname)']).stdout;
}

function reflogBytes(storeDir: string): string {
  const f = path.join(storeDir, 'reflog.jsonl');
  return existsSync(f) ? readFileSync(f, 'utf8') : '';
}

interface Box {
  store: string;
  gitdir: string;
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** `mstore serve` over a new bare store, with one push token; `config` is merged into its config.json first. */
async function serveBox(root: string, config: Record<string, unknown> = {}): Promise<Box> {
  const store = path.join(root, 'box');
  ok(root, ['init', '--bare', store]);
  const cfgFile = path.join(store, 'config.json');
  writeFileSync(cfgFile, `${JSON.stringify({ ...(JSON.parse(readFileSync(cfgFile, 'utf8')) as object), ...config }, null, 2)}\n`);
  const tokens = path.join(root, 'tokens');
  writeFileSync(tokens, `push ${TOKEN}\n`, { mode: 0o600 });
  const child = spawn(process.execPath, [CLI, 'serve', store, '--listen', '127.0.0.1:0', '--tokens', tokens], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NO_COLOR: '1' },
  });
  child.stderr!.resume();
  const url = await listeningUrl(child);
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
  return {
    store,
    gitdir: path.join(store, 'git'),
    url,
    child,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await closed;
    },
  };
}

/** One raw POST /v1/refs/update: status and the error body's message. */
async function rawUpdate(url: string, updates: { ref: string; old: string | null; new: string | null }[]): Promise<{ status: number; text: string }> {
  const res = await fetch(`${url}/v1/refs/update`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ updates }),
  });
  return { status: res.status, text: await res.text() };
}

test('#17.1 a push whose last ref clashes with a ref on the box moves nothing (real client)', async () => {
  const root = tmpDir('mstore-hrefs-');
  const box = await serveBox(root);
  try {
    const ws = workspace(root, 'ws', 3);
    writeModelDir(ws, { ...small, step: 9 });
    ok(ws, ['commit', '-m', 'z1', '--line', 'zline']);
    const env = { BOX_TOKEN: TOKEN };
    ok(ws, ['remote', 'add', 'box', box.url, '--token-env', 'BOX_TOKEN']);
    ok(ws, ['push', 'box', 'v001'], env);
    // A head named `zline` on the box: refs/heads/zline/latest cannot be created beside it.
    const v1 = git(box.gitdir, ['rev-parse', 'refs/heads/latest']).stdout.trim();
    assert.is(git(box.gitdir, ['update-ref', 'refs/heads/zline', v1]).code, 0);
    const refs = refsOf(box.gitdir);
    const history = reflogBytes(box.store);
    const line = refusedUnchanged(ws, ['zline/v001'], 'push latest v003 zline/v001', 2, /refs\/heads\/zline/, () =>
      mstore(ws, ['push', 'box', 'latest', 'v003', 'zline/v001'], env),
    );
    assert.not.match(line, /EISDIR|ENOTDIR|EEXIST|\/tmp\//, 'no errno, no path');
    assert.is(refsOf(box.gitdir), refs, 'no ref moved on the box');
    assert.is(reflogBytes(box.store), history, "the box's ref history is unchanged");
  } finally {
    await box.stop();
    cleanup(root);
  }
});

test('#17.2 refs are read by their exact name; a name that shadows another namespace is refused', async () => {
  const root = tmpDir('mstore-hrefs-');
  const box = await serveBox(root);
  try {
    const ws = workspace(root, 'ws', 1);
    const gitdir = path.join(ws, '.mstore', 'git');
    const v1 = git(gitdir, ['rev-parse', 'v001^{commit}']).stdout.trim();
    // Exact reads: a ref refs/heads/refs/tags/v004 (say from an old server) is not v004.
    assert.is(git(gitdir, ['update-ref', 'refs/heads/refs/tags/v004', v1]).code, 0);
    const shown = mstore(ws, ['show', 'v004']);
    expectRefusal(shown, 1, /unknown revision 'v004'/, 'show v004 when only refs/heads/refs/tags/v004 exists');
    // The client refuses to push it (the rule, one line), and the box never sees it.
    const env = { BOX_TOKEN: TOKEN };
    ok(ws, ['remote', 'add', 'box', box.url, '--token-env', 'BOX_TOKEN']);
    ok(ws, ['push', 'box', 'v001'], env);
    const refs = refsOf(box.gitdir);
    refusedUnchanged(ws, ['v001'], 'push refs/heads/refs/tags/v004', 2, /refs\/heads\/refs\/tags\/v004.*(shadow|namespace)/, () =>
      mstore(ws, ['push', 'box', 'refs/heads/refs/tags/v004'], env),
    );
    assert.is(refsOf(box.gitdir), refs, 'the box has no new ref');
    // The server refuses it at the door: 400 with the rule.
    const history = reflogBytes(box.store);
    for (const ref of ['refs/heads/refs/tags/v004', 'refs/tags/refs/heads/x', 'refs/heads/HEAD', 'refs/tags/latest', 'refs/tags/exp/latest']) {
      const r = await rawUpdate(box.url, [{ ref, old: null, new: v1 }]);
      assert.is(r.status, 400, `${ref}: ${r.text}`);
      assert.match(r.text, /EBADNAME/, `${ref}: code`);
      assert.ok(r.text.includes(ref), `${ref}: the body names it: ${r.text}`);
    }
    assert.is(refsOf(box.gitdir), refs, 'no shadowing ref was created on the box');
    assert.is(reflogBytes(box.store), history, "the box's ref history is unchanged");
  } finally {
    await box.stop();
    cleanup(root);
  }
});

test('#17.10 ref names the writer would reject get 400 with the rule, never 500', async () => {
  const root = tmpDir('mstore-hrefs-');
  const box = await serveBox(root);
  try {
    const ws = workspace(root, 'ws', 1);
    ok(ws, ['remote', 'add', 'box', box.url, '--token-env', 'BOX_TOKEN']);
    ok(ws, ['push', 'box'], { BOX_TOKEN: TOKEN });
    const v1 = git(box.gitdir, ['rev-parse', 'refs/heads/latest']).stdout.trim();
    const refs = refsOf(box.gitdir);
    const cases: [string, RegExp][] = [
      ['refs/tags/x.', /end in '\.'/],
      ['refs/tags/x.lock/y', /\.lock/],
      [`refs/tags/${'a'.repeat(256)}`, /255 bytes/],
      ['refs/tags/a b', /space/],
      ['refs/x', /refs\/<namespace>\/<name>/],
    ];
    for (const [ref, rule] of cases) {
      const r = await rawUpdate(box.url, [{ ref, old: null, new: v1 }]);
      assert.is(r.status, 400, `${ref.slice(0, 40)}: ${r.text}`);
      assert.match(r.text, rule, `${ref.slice(0, 40)}: the rule`);
    }
    assert.is(refsOf(box.gitdir), refs, 'nothing was created');
  } finally {
    await box.stop();
    cleanup(root);
  }
});

test('#17.7 the number of refs is capped (config maxRefs): refused with the rule, nothing moved', async () => {
  const root = tmpDir('mstore-hrefs-');
  const box = await serveBox(root, { maxRefs: 3 });
  try {
    const ws = workspace(root, 'ws', 3);
    const env = { BOX_TOKEN: TOKEN };
    ok(ws, ['remote', 'add', 'box', box.url, '--token-env', 'BOX_TOKEN']);
    ok(ws, ['push', 'box', 'v001'], env); // latest, v001: 2 refs
    const refs = refsOf(box.gitdir);
    const history = reflogBytes(box.store);
    refusedUnchanged(ws, ['v003'], 'push v003 over the cap', 1, /4 refs.*maxRefs/, () => mstore(ws, ['push', 'box', 'v003'], env));
    assert.is(refsOf(box.gitdir), refs, 'no ref moved on the box');
    assert.is(reflogBytes(box.store), history, "the box's ref history is unchanged");
    const v1 = git(box.gitdir, ['rev-parse', 'refs/tags/v001']).stdout.trim();
    const r = await rawUpdate(box.url, [
      { ref: 'refs/tags/a1', old: null, new: v1 },
      { ref: 'refs/tags/a2', old: null, new: v1 },
    ]);
    assert.ok(r.status >= 400 && r.status < 500, `over the cap: 4xx, got ${r.status} ${r.text}`);
    assert.match(r.text, /maxRefs/, 'the body names the rule');
    // One more ref fits exactly.
    const one = await rawUpdate(box.url, [{ ref: 'refs/tags/a1', old: null, new: v1 }]);
    assert.is(one.status, 200, one.text);
  } finally {
    await box.stop();
    cleanup(root);
  }
});

test('#20.7 restore brings back the whole group or nothing, one line naming the clash', () => {
  const root = tmpDir('mstore-hrefs-');
  try {
    const ws = workspace(root, 'ws', 2);
    ok(ws, ['tag', 'exp', 'v002']);
    ok(ws, ['rm', 'v002', '--confirm', '--no-backup']);
    // The tag's name is now a folder: a line `exp` has refs/tags/exp/v001.
    writeModelDir(ws, { ...small, step: 7 });
    ok(ws, ['commit', '-m', 'exp line', '--line', 'exp']);
    const line = refusedUnchanged(ws, ['exp/v001'], 'restore v002 whose tag exp is now a line', 2, /refs\/tags\/exp/, () => mstore(ws, ['restore', 'v002']));
    assert.not.match(line, /EISDIR|ENOTDIR|\.mstore|\/tmp\//, 'no errno, no internal path');
    expectRefusal(mstore(ws, ['show', 'v002']), 1, /v002/, 'v002 stays removed');
  } finally {
    cleanup(root);
  }
});

test('#20.14 tag names get their real rule; an ambiguous commit-id prefix is called ambiguous', () => {
  const root = tmpDir('mstore-hrefs-');
  try {
    const ws = workspace(root, 'ws', 1);
    const cases: [string, RegExp][] = [
      ['a b', /space/],
      ['a..b', /'\.\.'/],
      ['x.lock', /\.lock/],
      ['x'.repeat(300), /255 bytes/],
    ];
    const before = versionContents(ws, ['v001']);
    for (const [name, rule] of cases) {
      const bytes = storeBytes(ws);
      const line = expectRefusal(mstore(ws, ['tag', name, 'v001']), 2, rule, `tag '${name.slice(0, 20)}'`);
      assert.not.match(line, /reserved|ENAMETOOLONG|\.mstore/, `tag '${name.slice(0, 20)}': its own rule, no internal path`);
      assert.is(storeBytes(ws), bytes, `tag '${name.slice(0, 20)}': the store's files are unchanged`);
    }
    assertIntact(ws, before, 'after the refused tags');
    // Two commits whose ids share their first 7 hex digits, written into the store's git.
    const gitdir = path.join(ws, '.mstore', 'git');
    const tree = git(gitdir, ['rev-parse', 'v001^{tree}']).stdout.trim();
    const seen = new Map<string, string>();
    let pair: [string, string] | undefined;
    for (let i = 0; !pair && i < 2_000_000; i++) {
      const body = `tree ${tree}\nauthor A <a@example.com> 0 +0000\ncommitter A <a@example.com> 0 +0000\n\nm${i}\n`;
      const id = createHash('sha1').update(`commit ${Buffer.byteLength(body)}\0${body}`).digest('hex');
      const other = seen.get(id.slice(0, 7));
      if (other) pair = [other, body];
      else seen.set(id.slice(0, 7), body);
    }
    assert.ok(pair, 'found two commit ids with one 7-digit prefix');
    const ids = pair!.map((body) => {
      const dir = tmpDir('mstore-hrefs-obj-');
      try {
        const f = path.join(dir, 'c');
        writeFileSync(f, body);
        const r = git(gitdir, ['hash-object', '-t', 'commit', '-w', f]);
        assert.is(r.code, 0, r.stderr);
        return r.stdout.trim();
      } finally {
        cleanup(dir);
      }
    });
    const prefix = ids[0].slice(0, 7);
    assert.is(ids[1].slice(0, 7), prefix);
    const line = expectRefusal(mstore(ws, ['show', prefix]), 1, /ambiguous/, `show ${prefix}`);
    for (const id of ids) assert.ok(line.includes(id.slice(0, 12)), `the candidates are listed: ${line}`);
  } finally {
    cleanup(root);
  }
});

test("blind spot: the path transport's compare-and-swap, deterministically (the remote moves between read and update)", async () => {
  const root = tmpDir('mstore-hrefs-');
  try {
    ok(root, ['init', '--bare', 'remote']);
    const remoteDir = path.join(root, 'remote');
    const a = workspace(root, 'a', 1);
    ok(a, ['remote', 'add', 'origin', remoteDir]);
    ok(a, ['push', 'origin']);
    // b starts from a's v001 and adds its own v002; a adds a different v002.
    ok(root, ['clone', remoteDir, 'b']);
    const b = path.join(root, 'b');
    writeModelDir(b, { ...small, step: 20 });
    ok(b, ['commit', '-m', 'b2']);
    writeModelDir(a, { ...small, step: 30 });
    ok(a, ['commit', '-m', 'a2']);

    const store = await Store.find(a);
    const real = await StoreRemote.open(remoteDir);
    let raced = 0;
    /** The path transport, but b pushes after a read the remote's refs and sent its objects. */
    const racing: Remote = {
      display: real.display,
      verifiesReceived: real.verifiesReceived,
      releasesSent: real.releasesSent,
      pool: real.pool,
      listRefs: () => real.listRefs(),
      missing: (kind, ids) => real.missing(kind, ids),
      send: (objects, onBytes) => real.send(objects, onBytes),
      fetch: (kind, ids, opts) => real.fetch(kind, ids, opts),
      updateRefs: (updates, opts) => {
        raced++;
        ok(b, ['push', 'origin']);
        return real.updateRefs(updates, opts);
      },
      close: () => real.close(),
    };
    const gitdir = path.join(remoteDir, 'git');
    try {
      let err: unknown;
      await push(store, racing).catch((e: unknown) => (err = e));
      assert.is(raced, 1, 'the remote moved between the read and the update');
      assert.instance(err, MstoreError, `a's push is refused: ${String(err)}`);
      assert.is((err as MstoreError).code, 'EREJECTED');
      assert.match((err as MstoreError).message, /refs\/(heads\/latest|tags\/v002)/);
      // The remote holds b's versions only; its history has b's push and nothing of a's.
      const bHead = git(path.join(b, '.mstore', 'git'), ['rev-parse', 'refs/heads/latest']).stdout.trim();
      assert.is(git(gitdir, ['rev-parse', 'refs/heads/latest']).stdout.trim(), bHead, "latest is b's");
      const history = reflogBytes(remoteDir)
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { new: string | null; reason: string });
      const aHead = git(path.join(a, '.mstore', 'git'), ['rev-parse', 'refs/heads/latest']).stdout.trim();
      assert.ok(!history.some((e) => e.new === aHead), "no history entry names a's version");
      // The control: the same push with nothing racing it goes through (force: b's v002 is replaced).
      const again = await push(store, real, { force: true });
      assert.ok(again.refs.length > 0);
      assert.is(git(gitdir, ['rev-parse', 'refs/heads/latest']).stdout.trim(), aHead, "with --force a's latest wins");
    } finally {
      await real.close();
      await store.close();
    }
  } finally {
    cleanup(root);
  }
});

test.run();
