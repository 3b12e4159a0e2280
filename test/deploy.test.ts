/**
 * Deploys end to end over HTTP on 127.0.0.1: a real `mstore serve` over a bare store with
 * deploy.json, the shipped post-receive hook, and the inference API stand-in
 * (scripts/inference-standin.ts) that refuses model directories whose safetensors do not parse.
 *   1. deploy v001 then v002: `current` -> v002, the stand-in has it active, status shows both;
 *   2. set_active answering 500, then the API down: the deploy fails, `current` and the active
 *      model stay on the previous version, the trigger ref is back; a retry after recovery works;
 *   3. kill -9 of the server's process group (server, hook, deploy apply) at 10 seeded moments of
 *      a deploy: after a restart (which reconciles), `current` names a complete directory whose
 *      every file hashes to the version's sha256;
 *   4. rollback reuses the materialised directory: nothing sent, nothing re-materialised.
 * The rollback's wall time for a 1 GiB model is measured by bench/deploy.ts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import os from 'node:os';
import { createHash } from 'node:crypto';
import { appendFileSync, lstatSync, readFileSync, writeFileSync } from 'node:fs';
import { CLI, git, mstore, prng, sha256File } from './helpers.js';
import { ENV, READ_TOKEN, commitVersion, current, killGroup, ok, serve, startStandin, status, withBox, type Box } from './deploy-helpers.js';

/** `current` names a complete directory: every file of the marker hashes to the version's sha256. */
function assertCurrentComplete(b: Box, why: string): string {
  const dir = path.join(b.deployRoot, current(b));
  const marker = JSON.parse(readFileSync(path.join(dir, '.mstore-deploy.json'), 'utf8')) as { version: string; commit: string; files: { path: string; sha256: string }[] };
  const show = JSON.parse(ok(b.store, ['show', marker.commit, '--json'])) as { files: { path: string; oid: string }[] };
  assert.equal(marker.files.map((f) => f.path).sort(), show.files.map((f) => f.path).sort(), `${why}: the marker lists the version's files`);
  for (const f of show.files) assert.is(sha256File(path.join(dir, f.path)), f.oid, `${why}: ${marker.version}:${f.path}`);
  return marker.version;
}

test('deploy v001 then v002 over HTTP: current -> v002, active in the API, both attempts recorded', () =>
  withBox('mstore-deploy-', async (b) => {
    await commitVersion(b.ws, 1);
    await commitVersion(b.ws, 10);
    const d1 = mstore(b.ws, ['deploy', 'box', 'v001'], ENV);
    assert.is(d1.code, 0, d1.stderr);
    assert.match(d1.stderr, /^remote: deploy: v001 is live/m);
    ok(b.ws, ['deploy', 'box', 'v002']);
    assert.is(current(b), 'v002');
    assert.is(assertCurrentComplete(b, 'after v002'), 'v002');
    assert.is(await b.standin.active(), 'mstore-v002');
    const st = status(b);
    assert.is(st.live?.version, 'v002');
    assert.equal(st.history.map((a) => [a.version, a.result]), [['v002', 'ok'], ['v001', 'ok']]);
    // The deploy root, a path on the box, is shown to a push token and not to a read token.
    assert.is((st as { root?: string }).root, b.deployRoot);
    const asReader = mstore(b.ws, ['deploy', 'status', 'box', '--json'], { BOX_TOKEN: READ_TOKEN });
    assert.is(asReader.code, 0, asReader.stderr);
    assert.is((JSON.parse(asReader.stdout) as { root?: string; live: { version: string } }).root, undefined, 'a read token learns no path');
    assert.is((JSON.parse(asReader.stdout) as { live: { version: string } }).live.version, 'v002');
    const text = mstore(b.ws, ['deploy', 'status', 'box'], { BOX_TOKEN: READ_TOKEN });
    assert.ok(text.code === 0 && !text.stdout.includes(b.deployRoot), `nor in the text output: ${text.stdout}${text.stderr}`);
    // Deploying what is live again is a no-op.
    assert.match(ok(b.ws, ['deploy', 'box', 'v002']), /already live/);
  }),
);

test('a failing API (500 on set_active, then down): deploy fails, current and active stay; a retry after recovery succeeds', () =>
  withBox('mstore-deploy-fail-', async (b) => {
    await commitVersion(b.ws, 1);
    await commitVersion(b.ws, 10);
    ok(b.ws, ['deploy', 'box', 'v001']);
    await b.standin.setFaults({ setActive: 500 });
    const failed = mstore(b.ws, ['deploy', 'box', 'v002'], ENV);
    assert.is(failed.code, 1);
    assert.match(failed.stderr, /^remote: deploy failed: set_active: .* answered 500/m);
    assert.match(failed.stderr, /^mstore: error: deploy of v002 failed on /m);
    assert.is(current(b), 'v001');
    assert.is(await b.standin.active(), 'mstore-v001');
    assert.is(mstore(b.store, ['log', 'deployed', '-n', '1', '--json']).stdout.includes('"v001"'), true, 'the trigger ref is back on v001');
    // The data stayed: the retry sends nothing.
    await b.standin.setFaults({});
    const retry = JSON.parse(ok(b.ws, ['deploy', 'box', 'v002', '--json'])) as { push: { bytesSent: number; upToDate: boolean }; attempt: { result: string } };
    assert.is(retry.attempt.result, 'ok');
    assert.is(retry.push.bytesSent, 0);
    assert.is(current(b), 'v002');
    assert.is(await b.standin.active(), 'mstore-v002');

    // The API down: register cannot connect.
    await commitVersion(b.ws, 20);
    const port = b.standin.port;
    await b.standin.close();
    const down = mstore(b.ws, ['deploy', 'box', 'v003'], ENV);
    assert.is(down.code, 1);
    assert.match(down.stderr, /deploy failed: register: .*(ECONNREFUSED|connect)/);
    assert.is(current(b), 'v002');
    b.standin = await startStandin(port);
    ok(b.ws, ['deploy', 'box', 'v003']);
    assert.is(current(b), 'v003');
    assert.is(await b.standin.active(), 'mstore-v003');
    const st = status(b);
    assert.equal(st.history.map((a) => [a.version, a.result]), [['v003', 'ok'], ['v003', 'failed'], ['v002', 'ok'], ['v002', 'failed'], ['v001', 'ok']]);
  }),
);

test('kill -9 of the server mid-deploy at 10 moments: after restart current is a complete, verified version', async () => {
  const seed = Number(process.env.MSTORE_TEST_SEED ?? Date.now() % 100000);
  const rnd = prng(seed);
  await withBox('mstore-deploy-kill-', async (b) => {
    const port = Number(new URL(b.server.url).port);
    // 2 x 16 MiB tensors: materialising and verifying takes a while.
    await commitVersion(b.ws, 1, 8192);
    ok(b.ws, ['deploy', 'box', 'v001']);
    await commitVersion(b.ws, 2, 8192);
    const t0 = Date.now();
    ok(b.ws, ['deploy', 'box', 'v002']);
    const deployMs = Date.now() - t0;
    let interrupted = 0;
    for (let round = 0; round < 10; round++) {
      await commitVersion(b.ws, 100 + round, 8192);
      const version = `v${String(round + 3).padStart(3, '0')}`;
      const client = spawn(process.execPath, [CLI, 'deploy', 'box', version], { cwd: b.ws, stdio: 'ignore', env: { ...process.env, ...ENV } });
      const clientGone = new Promise((r) => client.once('exit', r));
      const at = Math.floor(rnd() * deployMs);
      await new Promise((r) => setTimeout(r, at));
      const finished = client.exitCode !== null;
      await killGroup(b.server, 'SIGKILL');
      await clientGone;
      if (!finished) interrupted++;
      // Whatever happened, current is whole right away (before any restart)...
      const before = assertCurrentComplete(b, `seed ${seed} round ${round} (kill at ${at} ms), before restart`);
      // ...and after the restart, which finishes a deploy the kill cut short.
      b.server = await serve(b.store, b.tokens, port);
      const after = assertCurrentComplete(b, `seed ${seed} round ${round}, after restart`);
      if (![before, version].includes(after)) {
        // The attempts say how it came to this (each with its action, result and reason).
        const h = status(b).history.slice(0, 8).map((a) => `${a.action} ${a.version} ${a.result}${a.reason ? ` (${a.reason})` : ''}`);
        assert.unreachable(`seed ${seed} round ${round}: live ${after}, expected ${before} or ${version}; attempts, newest first: ${h.join('; ')}`);
      }
      // The inference API serves what current names (a kill between the switch and set_active is finished by the restart).
      assert.is(await b.standin.active(), `mstore-${after}`, `seed ${seed} round ${round}: the API's active model against current (${after})`);
      assert.ok(!current(b).startsWith('.'), `current names ${current(b)}, a temporary directory`);
      assert.ok(lstatSync(path.join(b.deployRoot, 'current')).isSymbolicLink());
    }
    assert.ok(interrupted >= 5, `seed ${seed}: only ${interrupted} of 10 kills came before the deploy finished`);
    // The box still deploys afterwards.
    await commitVersion(b.ws, 999, 8192);
    ok(b.ws, ['deploy', 'box', 'v013']);
    assert.is(assertCurrentComplete(b, 'final'), 'v013');
  });
});

test('a server killed between recording a trigger move and making it: the restart finishes the move, then deploys it', () =>
  withBox('mstore-deploy-torn-', async (b) => {
    const port = Number(new URL(b.server.url).port);
    await commitVersion(b.ws, 1, 2048);
    ok(b.ws, ['deploy', 'box', 'v001']);
    await commitVersion(b.ws, 2, 2048);
    ok(b.ws, ['push', 'box']);
    const gitdir = path.join(b.store, 'git');
    const live = git(gitdir, ['rev-parse', 'refs/heads/deployed']).stdout.trim();
    const next = git(gitdir, ['rev-parse', 'refs/tags/v002^{commit}']).stdout.trim();
    await killGroup(b.server, 'SIGKILL');
    // What a kill between moveRefs' journal append and its ref write leaves: the move recorded,
    // not made, and the lock of a process that is gone.
    const move = { time: new Date().toISOString(), ref: 'refs/heads/deployed', old: live, new: next, reason: 'push', op: '0123456789ab', message: 'deploy v002' };
    appendFileSync(path.join(b.store, 'reflog.jsonl'), `${JSON.stringify(move)}\n`);
    const dead = spawnSync(process.execPath, ['-e', '']).pid;
    writeFileSync(path.join(b.store, 'lock'), JSON.stringify({ pid: dead, host: os.hostname(), since: move.time, command: 'receive' }));
    b.server = await serve(b.store, b.tokens, port);
    // Before the fix the restart saw the trigger where it was and deployed nothing; the next
    // push's lock take-over then moved it with no deploy (the live version behind the trigger).
    assert.is(git(gitdir, ['rev-parse', 'refs/heads/deployed']).stdout.trim(), next, 'the recorded move is made');
    assert.is(assertCurrentComplete(b, 'after the restart'), 'v002');
    assert.is(await b.standin.active(), 'mstore-v002');
    assert.is(status(b).live?.version, 'v002');
  }),
);

test('rollback switches to the previous good version without transfer or re-materialisation', () =>
  withBox('mstore-deploy-rb-', async (b) => {
    await commitVersion(b.ws, 1, 2048);
    await commitVersion(b.ws, 2, 2048);
    ok(b.ws, ['deploy', 'box', 'v001']);
    ok(b.ws, ['deploy', 'box', 'v002']);
    const marker = readFileSync(path.join(b.deployRoot, 'v001', '.mstore-deploy.json'), 'utf8');
    const r = mstore(b.ws, ['deploy', 'rollback', 'box'], ENV);
    assert.is(r.code, 0, r.stderr);
    assert.match(r.stderr, /v001 is already materialised/);
    assert.is(current(b), 'v001');
    assert.is(await b.standin.active(), 'mstore-v001');
    assert.is(readFileSync(path.join(b.deployRoot, 'v001', '.mstore-deploy.json'), 'utf8'), marker, 'the directory was reused, not rewritten');
    const st = status(b);
    assert.equal(st.history[0].action, 'rollback');
    assert.is(st.live?.version, 'v001');
    // Rolling back to a named version, then forward again.
    ok(b.ws, ['deploy', 'rollback', 'box', 'v002']);
    assert.is(current(b), 'v002');
    const none = mstore(b.ws, ['deploy', 'rollback', 'box', 'v099'], ENV);
    assert.is(none.code, 1);
    assert.match(none.stderr, /never deployed 'v099'/);
    const digest = createHash('sha256').update(readFileSync(path.join(b.deployRoot, 'v002', 'model.safetensors'))).digest('hex');
    assert.is(digest, sha256File(path.join(b.ws, 'model.safetensors')));
  }),
);

test.run();
