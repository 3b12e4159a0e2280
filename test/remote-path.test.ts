/**
 * Remotes over the path transport (another store on this machine): the Remote contract
 * (remote-acceptance.ts) on StoreRemote over a bare store, then through the real CLI:
 *   - v001–v003 with a 1 GiB safetensors file pushed, cloned, every version checked out byte
 *     for byte; v004 (a third of the tensors changed) sends at most the changed bytes + 1 %
 *     (MSTORE_TEST_LARGE_GIB scales the model, e.g. 0.1 for a quick run);
 *   - kill -9 of a push at 10 seeded random moments: the remote's refs always name complete,
 *     verified versions, and the rerun sends only what was still missing;
 *   - two clients pushing different versions to the same ref at once, 20 rounds: exactly one
 *     wins, the other is rejected as non-fast-forward, nothing is lost;
 *   - the receiving store drops a whole upload that holds a bad object, refuses manifests
 *     naming chunks it lacks or hashing to another file, and stays unchanged;
 *   - pull's rules: tags never move, heads only fast-forward, unless --force.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, statSync, writeFileSync, readFileSync, appendFileSync, chmodSync } from 'node:fs';
import { CLI, cleanup, git, mstore, prng, tmpDir, treeDigest, writeModelDir } from './helpers.js';
import { expectRefusal } from './hostile-helpers.js';
import { StoreRemote } from '../src/remote/transport/path.js';
import type { WireObject } from '../src/remote/remote.js';
import { bareStores, contractSuite, GIB, killWorkspace, ok, okJson, racePushes, roundTrip, type PushJson } from './remote-acceptance.js';

function refsOf(gitdir: string): string {
  return git(gitdir, ['for-each-ref', '--format=%(refname) %(objectname)']).stdout;
}

/** Bytes of every file under dir. */
function bytesUnder(dir: string): number {
  let n = 0;
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    const st = statSync(p);
    n += st.isDirectory() ? bytesUnder(p) : st.size;
  }
  return n;
}

const bareStore = bareStores('mstore-rcontract-');
contractSuite('path', async () => {
  const remote = await StoreRemote.open(bareStore());
  return { remote, dispose: () => remote.close() };
});

test(`${GIB} GiB x 3 versions pushed to a path, cloned, checked out byte for byte; v004 sends the changed bytes + 1 %`, async () => {
  const root = tmpDir('mstore-rpath-');
  try {
    const ws = path.join(root, 'ws');
    mkdirSync(ws);
    ok(ws, ['init']);
    ok(root, ['init', '--bare', 'remote']);
    ok(ws, ['remote', 'add', 'origin', '../remote']);
    const remote = path.join(root, 'remote');
    await roundTrip(root, ws, {
      label: 'path',
      remote: 'origin',
      cloneUrl: remote,
      check: (why) => {
        assert.is(git(path.join(remote, 'git'), ['fsck', '--strict']).code, 0, `${why}: git fsck --strict`);
        assert.is(mstore(remote, ['verify', '--all']).code, 0, `${why}: verify --all in the remote`);
      },
    });
  } finally {
    cleanup(root);
  }
});

test('kill -9 of push at 10 random moments: remote refs name complete versions; the rerun sends only the rest', async () => {
  const seed = Number(process.env.MSTORE_TEST_SEED ?? Date.now() % 100000);
  const rnd = prng(seed);
  const root = tmpDir('mstore-rkill-');
  try {
    const ws = killWorkspace(root);
    ok(root, ['init', '--bare', 'remote']);
    const remote = path.join(root, 'remote');
    const remoteGit = path.join(remote, 'git');
    const total = statSync(path.join(ws, 'model.safetensors')).size;
    ok(root, ['init', '--bare', 'timing']);
    const t0 = Date.now();
    ok(ws, ['push', path.join(root, 'timing')]);
    const pushMs = Date.now() - t0;
    let killed = 0;
    for (let round = 0; round < 10; round++) {
      const at = Math.floor(rnd() * pushMs);
      const child = spawn(process.execPath, [CLI, 'push', remote], { cwd: ws, stdio: 'ignore' });
      await new Promise((r) => setTimeout(r, at));
      const exited = child.exitCode !== null;
      if (!exited) {
        const gone = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await gone;
        killed++;
      }
      // Whatever refs the remote has name complete, verified versions.
      const refs = refsOf(remoteGit);
      if (refs.trim()) {
        const v = mstore(remote, ['verify', '--all']);
        assert.is(v.code, 0, `seed ${seed}, round ${round} (kill at ${at} ms): remote refs name damaged versions: ${v.stdout}${v.stderr}`);
      }
      assert.is(git(remoteGit, ['fsck', '--strict']).code, 0, `seed ${seed}, round ${round}: git fsck`);
      if (refs.includes('refs/tags/v001')) {
        // Pushed completely before the kill: start over on a fresh remote for the next round.
        cleanup(remote);
        ok(root, ['init', '--bare', 'remote']);
      }
    }
    assert.ok(killed >= 5, `seed ${seed}: only ${killed} of 10 kills landed mid-push`);
    // Kill once more mid-way, then measure the rerun against what the remote still lacks.
    cleanup(remote);
    ok(root, ['init', '--bare', 'remote']);
    const child = spawn(process.execPath, [CLI, 'push', remote], { cwd: ws, stdio: 'ignore' });
    const gone = new Promise((r) => child.once('exit', r));
    await new Promise((r) => setTimeout(r, pushMs / 2));
    child.kill('SIGKILL');
    await gone;
    const before = readdirSync(path.join(remote, 'packs')).length ? bytesUnder(path.join(remote, 'packs')) : 0;
    const rerun = okJson<PushJson>(ws, ['push', remote]);
    // What the killed push left indexed is not sent again; a pack being written when the kill
    // came (at most 64 MiB, sealed packs are indexed at once) is lost and sent again.
    assert.ok(rerun.bytesSent <= total - before + 64 * 2 ** 20 + 4096, `seed ${seed}: rerun sent ${rerun.bytesSent}, the remote had ${before} of ${total}`);
    assert.is(mstore(remote, ['verify', '--all']).code, 0);
    const out = path.join(root, 'out');
    ok(root, ['clone', remote, 'out']);
    assert.equal(treeDigest(out), treeDigest(ws));
  } finally {
    cleanup(root);
  }
});

test('two clients push different versions to the same ref at once, 20 rounds: one wins, the other is rejected, nothing lost', async () => {
  const root = tmpDir('mstore-rrace-');
  try {
    const a = path.join(root, 'a');
    mkdirSync(a);
    ok(a, ['init']);
    writeModelDir(a, { step: 1 });
    ok(a, ['commit', '-m', 'base']);
    ok(root, ['init', '--bare', 'remote']);
    ok(a, ['remote', 'add', 'origin', '../remote']);
    ok(a, ['push', 'origin']);
    ok(root, ['clone', 'remote', 'b']);
    const b = path.join(root, 'b');
    const remoteGit = path.join(root, 'remote', 'git');
    await racePushes(a, b, 20, () => git(remoteGit, ['rev-parse', 'latest']).stdout.trim());
    assert.is(mstore(path.join(root, 'remote'), ['verify', '--all']).code, 0);
    assert.is(git(remoteGit, ['fsck', '--strict']).code, 0);
    assert.is(git(remoteGit, ['rev-list', '--count', 'latest']).stdout.trim(), '21');
  } finally {
    cleanup(root);
  }
});

test('the receiving store drops a whole upload holding a bad object, refuses dangling and lying manifests and bad ids, and stays unchanged', async () => {
  const root = tmpDir('mstore-rbad-');
  try {
    ok(root, ['init', '--bare', 'remote']);
    const dir = path.join(root, 'remote');
    const snapshot = (): string => JSON.stringify([bytesUnder(path.join(dir, 'packs')), refsOf(path.join(dir, 'git')), readdirSync(path.join(dir, 'git', 'objects')).sort()]);
    const before = snapshot();
    const r = await StoreRemote.open(dir);
    const good = Buffer.from('hello chunk');
    const goodId = createHash('sha256').update(good).digest('hex');
    const send = async (objs: WireObject[]): Promise<string> => {
      async function* it(): AsyncGenerator<WireObject> {
        yield* objs;
      }
      try {
        await r.send(it());
        return 'accepted';
      } catch (e) {
        return (e as Error).message;
      }
    };
    try {
      assert.match(await send([{ kind: 'chunk', id: goodId, data: good }, { kind: 'chunk', id: goodId.replace(/^./, (c) => (c === 'a' ? 'b' : 'a')), data: good }]), /do not hash to its id/);
      const manifest = Buffer.alloc(36);
      createHash('sha256').update('elsewhere').digest().copy(manifest);
      manifest.writeUInt32LE(9, 32);
      assert.match(await send([{ kind: 'file', id: 'f'.repeat(64), data: manifest }]), /lists chunk .* which neither/);
      // A manifest whose chunks arrive in order (in shared memory, as a server decodes them)
      // is checked against the file's oid on arrival (receipt.ts): one that lies is refused.
      const shared = Buffer.from(new SharedArrayBuffer(good.length));
      good.copy(shared);
      const lie = Buffer.alloc(36);
      Buffer.from(goodId, 'hex').copy(lie);
      lie.writeUInt32LE(good.length, 32);
      const otherOid = createHash('sha256').update('another file').digest('hex');
      assert.match(await send([{ kind: 'chunk', id: goodId, data: shared }, { kind: 'file', id: otherOid, data: lie }]), /arrived in order and hash to another file/);
      assert.match(await send([{ kind: 'chunk', id: '../../etc/passwd', data: good }]), /bad chunk id/);
      assert.is(snapshot(), before, 'refused uploads leave the store unchanged');
    } finally {
      await r.close();
    }
  } finally {
    cleanup(root);
  }
});

test('pull: tags never move and heads only fast-forward (unless --force); post-receive output reaches the pusher', () => {
  const root = tmpDir('mstore-rpull-');
  try {
    const a = path.join(root, 'a');
    mkdirSync(a);
    ok(a, ['init']);
    writeModelDir(a, { step: 1 });
    ok(a, ['commit', '-m', 'one']);
    ok(root, ['init', '--bare', 'remote']);
    const hook = path.join(root, 'remote', 'hooks', 'post-receive');
    writeFileSync(hook, '#!/bin/sh\nwhile read old new ref; do echo "deployed $ref"; done\n');
    chmodSync(hook, 0o755);
    const pushed = mstore(a, ['push', '../remote']);
    assert.is(pushed.code, 0, pushed.stderr);
    assert.match(pushed.stderr, /^remote: deployed refs\/tags\/v001$/m);
    ok(root, ['clone', 'remote', 'b']);
    const b = path.join(root, 'b');
    // Diverge: both commit v002 differently; a pushes first.
    writeFileSync(path.join(a, 'config.json'), '{"x":"a"}');
    writeFileSync(path.join(b, 'config.json'), '{"x":"b"}');
    ok(a, ['commit', '-m', 'a2']);
    ok(b, ['commit', '-m', 'b2']);
    ok(a, ['push', '../remote']);
    // every ref of b, taken before the pull that must be refused
    const refsOf = (ws: string): string => git(path.join(ws, '.mstore', 'git'), ['for-each-ref', '--format=%(refname) %(objectname)']).stdout;
    const before = refsOf(b);
    assert.match(before, /refs\/tags\/v002 [0-9a-f]{40}/);
    const refused = mstore(b, ['pull', 'origin']);
    assert.is(refused.code, 1);
    assert.match(refused.stderr, /rejected refs\/.* \(non-fast-forward\)/);
    assert.is(refsOf(b), before, 'a refused pull moves no ref');
    const forced = okJson<{ refs: { ref: string }[] }>(b, ['pull', 'origin', '--force']);
    assert.ok(forced.refs.some((r) => r.ref === 'refs/tags/v002'));
    const v002 = (ws: string): string => git(path.join(ws, '.mstore', 'git'), ['rev-parse', 'v002']).stdout;
    assert.is(v002(b), v002(a), 'the forced pull moved v002 to the remote one');
    assert.match(ok(b, ['reflog', 'v002']), /pull/);
    appendFileSync(path.join(b, 'config.json'), '\n');
    assert.match(readFileSync(path.join(b, 'config.json'), 'utf8'), /"x":"b"/, 'pull moves refs, it does not touch the workspace');
  } finally {
    cleanup(root);
  }
});

/** Inverts the middle byte (inside a tensor's chunk data) of every pack under `store`/packs; returns the pack files. */
function tamperPacks(store: string): string[] {
  const files: string[] = [];
  for (const sub of readdirSync(path.join(store, 'packs'))) {
    for (const name of readdirSync(path.join(store, 'packs', sub))) {
      if (!name.endsWith('.pack')) continue;
      const f = path.join(store, 'packs', sub, name);
      const data = readFileSync(f);
      data[data.length >> 1] ^= 0xff;
      chmodSync(f, 0o644);
      writeFileSync(f, data);
      files.push(f);
    }
  }
  return files;
}

test('pull from a path remote whose pack was tampered with: refused with one line naming the chunk, no name in the local store moved', () => {
  const root = tmpDir('mstore-rtamper-');
  try {
    const a = path.join(root, 'a');
    mkdirSync(a);
    ok(a, ['init']);
    writeModelDir(a, { step: 1 });
    ok(a, ['commit', '-m', 'one']);
    ok(root, ['init', '--bare', 'remote']);
    ok(a, ['push', '../remote']);
    const b = path.join(root, 'b');
    mkdirSync(b);
    ok(b, ['init']);
    ok(b, ['remote', 'add', 'origin', '../remote']);
    assert.ok(tamperPacks(path.join(root, 'remote')).length > 0, 'the remote has packs');
    refusedUnchangedStore(b, 'pull from a tampered path remote', () => mstore(b, ['pull', 'origin']));
  } finally {
    cleanup(root);
  }
});

/**
 * What names the data of a store: its refs, its ref history and its config. A refused pull
 * keeps the objects and verified packs it had received before the damaged chunk (nothing
 * names them; gc frees them, as after a killed pull): these must not change at all.
 */
function storeNames(ws: string): string {
  const gitdir = path.join(ws, '.mstore', 'git');
  const read = (f: string): string => {
    try {
      return readFileSync(path.join(ws, '.mstore', f), 'utf8');
    } catch {
      return '(none)';
    }
  };
  return [git(gitdir, ['for-each-ref', '--format=%(refname) %(objectname)']).stdout, read('reflog.jsonl'), read('config.json'), read('git/HEAD')].join('\n--\n');
}

/** `act` is refused with exit 1 and one line naming a chunk whose bytes do not hash to its id; no name in `ws`'s store moved. */
function refusedUnchangedStore(ws: string, what: string, act: () => ReturnType<typeof mstore>): void {
  const names = storeNames(ws);
  expectRefusal(act(), 1, /chunk [0-9a-f]{64}: its bytes do not hash to its id/, what);
  assert.is(storeNames(ws), names, `${what}: no ref, ref history entry or config of the local store changed`);
  assert.is(mstore(ws, ['fsck']).code, 0, `${what}: fsck clean`);
  assert.equal(JSON.parse(mstore(ws, ['log', '--json']).stdout), [], `${what}: no version arrived`);
}

test.run();
