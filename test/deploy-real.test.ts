/**
 * Deploys to a real inference server (issue 18, part 3): test/python/inference_app.py, FastAPI +
 * uvicorn + transformers on the CPU, whose register loads the version's directory with
 * from_pretrained and whose /generate runs the active model. Tiny seeded Qwen3 models are made by
 * transformers here (test/python/hf_stack.py), with their greedy output read straight from their
 * original directories:
 *   1. deploy v001, then v002: /generate answers with v002's greedy output;
 *   2. a version whose bytes were damaged in the box's store is refused before register: the
 *      server never hears of it, and v002 keeps answering;
 *   3. rollback to v001 brings v001's output back.
 * Needs the Hugging Face stack (test/hf-helpers.ts); without it this test fails, it does not skip.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { closeSync, cpSync, openSync, readdirSync, rmSync, statSync, writeSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { mstore, tmpDir, cleanup } from './helpers.js';
import { ENV, ok, withBox, type Standin } from './deploy-helpers.js';
import { hfPython, hfStack, pyScript } from './hf-helpers.js';

const PROMPT = [1, 5, 9, 13, 17];

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** inference_app.py on a free port, up once /health answers; shaped as the deploy helpers' API. */
/** The running app's stderr and exit, for failure messages. */
let app = { err: '', exited: null as number | string | null };

async function startRealApi(): Promise<Standin> {
  const port = await freePort();
  const child = spawn(hfPython(), [pyScript('inference_app.py'), String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
  app = { err: '', exited: null };
  child.stderr!.on('data', (d: Buffer) => (app.err += d.toString()));
  child.once('exit', (code, signal) => (app.exited = code ?? signal));
  const err = (): string => app.err;
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`inference_app.py exited ${child.exitCode}: ${err().slice(-2000)}`);
    const up = await fetch(`${url}/health`).then((r) => r.ok, () => false);
    if (up) break;
    if (Date.now() > deadline) throw new Error(`inference_app.py did not answer /health in 120 s: ${err().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  return {
    url,
    port,
    child,
    setFaults: () => Promise.reject(new Error('the real inference server takes no faults')),
    active: async () => ((await (await fetch(`${url}/health`)).json()) as { active_model: string | null }).active_model,
    close: async () => {
      if (child.exitCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await gone;
    },
  };
}

async function generate(api: string): Promise<{ model: string; tokens: number[] }> {
  const r = await fetch(`${api}/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ input_ids: PROMPT, max_tokens: 12 }) }).catch((e: Error) => {
    throw new Error(`/generate: ${e.message} (${(e.cause as Error | undefined)?.message ?? ''}); the app ${app.exited === null ? 'is running' : `exited (${app.exited})`}; its stderr: ${app.err.slice(-1500)}`);
  });
  assert.is(r.status, 200, `/generate answered ${r.status}: ${await r.clone().text()}`);
  return (await r.json()) as { model: string; tokens: number[] };
}

test('deploy v001 then v002 to a real FastAPI + transformers server; a damaged version is refused before register; rollback', async () => {
  const models = tmpDir('mstore-real-models-');
  try {
    const made = (await hfStack(['make', path.join(models, 'm1'), '1', path.join(models, 'm2'), '2', path.join(models, 'm3'), '3'], {}, models)) as { tokens: number[][] };
    const [t1, t2] = made.tokens;
    assert.not.equal(t1, t2, 'the seeded models answer differently');
    await withBox(
      'mstore-deploy-real-',
      async (b) => {
        const commit = (m: string, msg: string): void => {
          for (const n of readdirSync(b.ws)) if (n !== '.mstore') rmSync(path.join(b.ws, n), { recursive: true });
          cpSync(path.join(models, m), b.ws, { recursive: true });
          ok(b.ws, ['commit', '-m', msg]);
        };
        commit('m1', 'one');
        commit('m2', 'two');
        ok(b.ws, ['deploy', 'box', 'v001']);
        assert.equal((await generate(b.standin.url)).tokens, t1, 'v001 answers as the model loaded from its original directory');
        ok(b.ws, ['deploy', 'box', 'v002']);
        const g2 = await generate(b.standin.url);
        assert.is(g2.model, 'mstore-v002');
        assert.equal(g2.tokens, t2, "v002's greedy output, as from its original directory");

        // v003 pushed, then a byte of its newest pack damaged on the box, then deployed.
        commit('m3', 'three');
        ok(b.ws, ['push', 'box', 'v003']);
        const packs = path.join(b.store, 'packs');
        const newest = readdirSync(packs, { recursive: true })
          .map(String)
          .filter((f) => f.endsWith('.pack'))
          .map((f) => path.join(packs, f))
          .sort((x, y) => statSync(y).mtimeMs - statSync(x).mtimeMs)[0];
        const fd = openSync(newest, 'r+');
        writeSync(fd, Buffer.from([0xff, 0x00, 0xff, 0x00]), 0, 4, Math.floor(statSync(newest).size / 3));
        closeSync(fd);
        const refused = mstore(b.ws, ['deploy', 'box', 'v003'], ENV);
        assert.is(refused.code, 1, `a damaged version must not deploy: ${refused.stdout}${refused.stderr}`);
        assert.match(refused.stderr, /damaged|hash|corrupt/i);
        const listed = (await (await fetch(`${b.standin.url}/models`)).json()) as { models: { name: string }[]; active: string };
        assert.not.ok(listed.models.some((m) => m.name === 'mstore-v003'), 'register was never called for the damaged version');
        assert.is(listed.active, 'mstore-v002');
        assert.equal((await generate(b.standin.url)).tokens, t2, 'v002 still answers');

        ok(b.ws, ['deploy', 'rollback', 'box', 'v001']);
        const back = await generate(b.standin.url);
        assert.is(back.model, 'mstore-v001');
        assert.equal(back.tokens, t1, "rollback brings v001's output back");
      },
      startRealApi,
    );
  } finally {
    cleanup(models);
  }
});

test.run();
