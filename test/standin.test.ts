/**
 * The inference API stand-in (scripts/inference-standin.ts) that deploy tests and the demo run
 * against: seed 002's endpoints over real HTTP on 127.0.0.1, register refusing broken model
 * directories by the safetensors rules, injected faults and recovery, robustness against bad
 * requests and hang-ups, and the script mode's listening line and SIGTERM stop.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { mkdirSync, openSync, writeSync, closeSync, truncateSync, statSync, writeFileSync } from 'node:fs';
import { startStandin, type Standin } from '../scripts/inference-standin.js';
import { cleanup, tmpDir, writeModelDir, writeSafetensors } from './helpers.js';

const SCRIPT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../scripts/inference-standin.js');

interface Reply {
  status: number;
  // Each test reads the fields it expects; the shapes are asserted there.
  json: Record<string, unknown>;
}

async function call(s: Standin, method: string, route: string, body?: unknown, raw?: string): Promise<Reply> {
  const r = await fetch(`${s.url}${route}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: raw ?? (body === undefined ? undefined : JSON.stringify(body)),
  });
  assert.is(r.headers.get('content-type'), 'application/json');
  return { status: r.status, json: (await r.json()) as Record<string, unknown> };
}

const dirs: string[] = [];
function workDir(): string {
  const d = tmpDir('mstore-standin-');
  dirs.push(d);
  return d;
}

test.after(() => {
  for (const d of dirs) cleanup(d);
});

test('a good model: register, list, set_active, generate and chat answer with the active model', async () => {
  const s = await startStandin();
  try {
    const dir = path.join(workDir(), 'v001');
    writeModelDir(dir);
    assert.equal((await call(s, 'GET', '/health')).json, { status: 'ok', active_model: null, models: 0 });
    assert.is((await call(s, 'POST', '/generate', { prompt: 'hi' })).status, 503, 'no active model yet');
    assert.is((await call(s, 'POST', '/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }] })).status, 503);

    const reg = await call(s, 'POST', '/models/register', { name: 'mstore-v001', path: dir });
    assert.is(reg.status, 200);
    // model.safetensors (4 tensors) and adapter/adapter_model.safetensors (2).
    assert.equal(reg.json, { registered: 'mstore-v001', files: 2, tensors: 6 });

    const act = await call(s, 'POST', '/models/set_active', { name: 'mstore-v001' });
    assert.equal([act.status, act.json], [200, { active: 'mstore-v001' }]);

    const list = await call(s, 'GET', '/models');
    assert.is(list.json.active, 'mstore-v001');
    const models = list.json.models as { name: string; path: string; active: boolean; registered_at: string }[];
    assert.is(models.length, 1);
    assert.equal([models[0].name, models[0].path, models[0].active], ['mstore-v001', dir, true]);
    assert.ok(!Number.isNaN(Date.parse(models[0].registered_at)));
    assert.equal((await call(s, 'GET', '/health')).json, { status: 'ok', active_model: 'mstore-v001', models: 1 });

    const gen = await call(s, 'POST', '/generate', { prompt: 'the quick brown fox jumps', max_tokens: 3 });
    assert.equal([gen.status, gen.json], [200, { model: 'mstore-v001', text: 'the quick brown', tokens: 3 }]);

    const chat = await call(s, 'POST', '/v1/chat/completions', {
      model: 'whatever',
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'two plus two' },
      ],
    });
    assert.is(chat.status, 200);
    assert.is(chat.json.object, 'chat.completion');
    assert.is(chat.json.model, 'mstore-v001');
    assert.type(chat.json.id, 'string');
    assert.equal(chat.json.choices, [{ index: 0, message: { role: 'assistant', content: 'two plus two' }, finish_reason: 'stop' }]);
    assert.equal(chat.json.usage, { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 });

    // A second version, re-registered under the same name: replaced, not duplicated.
    const dir2 = path.join(workDir(), 'v002');
    writeModelDir(dir2, { step: 2 });
    assert.is((await call(s, 'POST', '/models/register', { name: 'mstore-v002', path: dir2 })).status, 200);
    assert.is((await call(s, 'POST', '/models/register', { name: 'mstore-v002', path: dir2 })).status, 200);
    assert.is((await call(s, 'POST', '/models/set_active', { name: 'mstore-v002' })).status, 200);
    const st = s.state();
    assert.is(st.active, 'mstore-v002');
    assert.equal(st.models.map((m) => m.name), ['mstore-v001', 'mstore-v002']);
    // Every call is recorded with its parsed body; the HTTP view says the same.
    assert.equal(st.calls[3], { method: 'POST', path: '/models/register', status: 200, body: { name: 'mstore-v001', path: dir } });
    assert.equal(st.calls.slice(-1)[0], { method: 'POST', path: '/models/set_active', status: 200, body: { name: 'mstore-v002' } });
    const remote = await call(s, 'GET', '/__standin/state');
    assert.equal(remote.json, JSON.parse(JSON.stringify(st)));
  } finally {
    await s.close();
  }
});

test('a single .safetensors file registers; a directory without one is refused', async () => {
  const s = await startStandin();
  try {
    const w = workDir();
    const file = path.join(w, 'one.safetensors');
    writeSafetensors(file, [{ name: 'w', dtype: 'F32', shape: [4, 4], seed: 1 }]);
    assert.equal((await call(s, 'POST', '/models/register', { name: 'one', path: file })).json, { registered: 'one', files: 1, tensors: 1 });
    const empty = path.join(w, 'empty');
    mkdirSync(empty);
    writeFileSync(path.join(empty, 'config.json'), '{}');
    const r = await call(s, 'POST', '/models/register', { name: 'empty', path: empty });
    assert.is(r.status, 422);
    assert.match(String(r.json.detail), /no \.safetensors file/);
    const notModel = await call(s, 'POST', '/models/register', { name: 'cfg', path: path.join(empty, 'config.json') });
    assert.is(notModel.status, 422);
  } finally {
    await s.close();
  }
});

test('broken models are refused with 422 naming the file, and change nothing', async () => {
  const s = await startStandin();
  try {
    // Truncated: the data buffer is shorter than the tensors the header declares.
    const trunc = path.join(workDir(), 'truncated');
    writeModelDir(trunc);
    const f = path.join(trunc, 'model.safetensors');
    truncateSync(f, statSync(f).size - 1000);
    const r1 = await call(s, 'POST', '/models/register', { name: 'bad1', path: trunc });
    assert.is(r1.status, 422);
    assert.match(String(r1.json.detail), /^model\.safetensors: tensors cover \d+ bytes but the data buffer holds \d+$/);

    // Cut inside the header itself.
    truncateSync(f, 40);
    const r1b = await call(s, 'POST', '/models/register', { name: 'bad1', path: trunc });
    assert.match(String(r1b.json.detail), /^model\.safetensors: header length \d+ runs past the end of the file$/);

    // A corrupted header in a nested file: its first byte is no longer '{'.
    const corrupt = path.join(workDir(), 'corrupt');
    writeModelDir(corrupt);
    const fd = openSync(path.join(corrupt, 'adapter', 'adapter_model.safetensors'), 'r+');
    writeSync(fd, Buffer.from('X'), 0, 1, 8);
    closeSync(fd);
    const r2 = await call(s, 'POST', '/models/register', { name: 'bad2', path: corrupt });
    assert.is(r2.status, 422);
    assert.is(r2.json.detail, 'adapter/adapter_model.safetensors: header does not start with "{"');

    const missing = await call(s, 'POST', '/models/register', { name: 'bad3', path: path.join(workDir(), 'nope') });
    assert.is(missing.status, 404);
    assert.match(String(missing.json.detail), /not found/);

    assert.equal(s.state().models, []);
    assert.is(s.state().active, null);
  } finally {
    await s.close();
  }
});

test('set_active: unknown name 404; a model whose files broke since register is refused, the active one stays', async () => {
  const s = await startStandin();
  try {
    const r = await call(s, 'POST', '/models/set_active', { name: 'ghost' });
    assert.is(r.status, 404);
    assert.match(String(r.json.detail), /ghost/);

    const a = path.join(workDir(), 'a');
    const b = path.join(workDir(), 'b');
    writeModelDir(a);
    writeModelDir(b);
    await call(s, 'POST', '/models/register', { name: 'a', path: a });
    await call(s, 'POST', '/models/register', { name: 'b', path: b });
    await call(s, 'POST', '/models/set_active', { name: 'a' });
    truncateSync(path.join(b, 'model.safetensors'), 100);
    const broken = await call(s, 'POST', '/models/set_active', { name: 'b' });
    assert.is(broken.status, 422);
    assert.match(String(broken.json.detail), /^model\.safetensors: /);
    cleanup(b);
    assert.is((await call(s, 'POST', '/models/set_active', { name: 'b' })).status, 404);
    assert.is(s.state().active, 'a');
  } finally {
    await s.close();
  }
});

test('faults: set_active answers 500 until recovered with {}; health and register faults; delay', async () => {
  const s = await startStandin();
  try {
    const dir = path.join(workDir(), 'm');
    writeModelDir(dir);
    const set = await call(s, 'POST', '/__standin/faults', { setActive: 500 });
    assert.equal([set.status, set.json], [200, { setActive: 500 }]);
    assert.is((await call(s, 'POST', '/models/register', { name: 'm', path: dir })).status, 200);
    const failed = await call(s, 'POST', '/models/set_active', { name: 'm' });
    assert.is(failed.status, 500);
    assert.type(failed.json.detail, 'string');
    assert.is(s.state().active, null, 'a faulted set_active changes nothing');
    assert.equal(s.state().calls.slice(-1)[0], { method: 'POST', path: '/models/set_active', status: 500, body: { name: 'm' } });

    assert.is((await call(s, 'POST', '/__standin/faults', {})).status, 200);
    assert.is((await call(s, 'POST', '/models/set_active', { name: 'm' })).status, 200);
    assert.is(s.state().active, 'm');

    s.setFaults({ health: 503, register: 502 });
    assert.is((await call(s, 'GET', '/health')).status, 503);
    assert.is((await call(s, 'POST', '/models/register', { name: 'm2', path: dir })).status, 502);
    assert.is((await call(s, 'GET', '/models')).status, 200, 'other routes are unaffected');
    s.setFaults({ delayMs: 300 });
    const t0 = Date.now();
    assert.is((await call(s, 'GET', '/health')).status, 200);
    assert.ok(Date.now() - t0 >= 280, `delayed ${Date.now() - t0} ms`);
    s.setFaults({});

    const bad = await call(s, 'POST', '/__standin/faults', { setActive: 'yes' });
    assert.is(bad.status, 422);
    assert.equal((bad.json.detail as { loc: string[] }[])[0].loc, ['body', 'setActive']);
    assert.is((await call(s, 'POST', '/__standin/faults', { setActiv: 500 })).status, 422);
  } finally {
    await s.close();
  }
});

test('robust: bad JSON 400, validation 422, unknown route 404, wrong method 405, body over 1 MiB 413', async () => {
  const s = await startStandin();
  try {
    const bad = await call(s, 'POST', '/models/register', undefined, '{"name": ');
    assert.is(bad.status, 400);
    assert.type(bad.json.detail, 'string');
    const missing = await call(s, 'POST', '/models/register', { name: 'x' });
    assert.equal([missing.status, missing.json.detail], [422, [{ type: 'missing', loc: ['body', 'path'], msg: 'Field required' }]]);
    assert.is((await call(s, 'POST', '/models/register')).status, 422, 'no body');
    assert.is((await call(s, 'POST', '/models/register', [1, 2])).status, 422);
    assert.is((await call(s, 'POST', '/generate', { prompt: 3 })).status, 422);
    assert.is((await call(s, 'POST', '/v1/chat/completions', { messages: 'hi' })).status, 422);
    assert.equal(await call(s, 'GET', '/nope'), { status: 404, json: { detail: 'Not Found' } });
    assert.equal(await call(s, 'GET', '/models/register'), { status: 405, json: { detail: 'Method Not Allowed' } });
    const big = await call(s, 'POST', '/models/register', undefined, JSON.stringify({ name: 'x', path: 'y'.repeat(1024 * 1024) }));
    assert.is(big.status, 413);
    assert.is((await call(s, 'GET', '/health')).status, 200);
  } finally {
    await s.close();
  }
});

test('robust: clients hanging up mid-body and mid-delay do not crash it', async () => {
  const s = await startStandin();
  try {
    // Half a body, then gone.
    await new Promise<void>((resolve, reject) => {
      const c = net.connect(s.port, '127.0.0.1', () => {
        c.write('POST /models/register HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{"name":');
        setTimeout(() => {
          c.destroy();
          resolve();
        }, 100);
      });
      c.on('error', reject);
    });
    // A request waiting out an injected delay, abandoned.
    s.setFaults({ delayMs: 300 });
    const ac = new AbortController();
    const pending = fetch(`${s.url}/health`, { signal: ac.signal }).catch((e: Error) => e.name);
    setTimeout(() => ac.abort(), 50);
    assert.is(await pending, 'AbortError');
    await new Promise((r) => setTimeout(r, 400));
    s.setFaults({});
    // Garbage that is not HTTP.
    await new Promise<void>((resolve) => {
      const c = net.connect(s.port, '127.0.0.1', () => c.end('\x00\x01 not http\r\n\r\n'));
      c.on('close', () => resolve());
      c.on('error', () => resolve());
      c.resume();
    });
    assert.is((await call(s, 'GET', '/health')).status, 200);
    const hung = s.state().calls.find((c) => c.path === '/models/register');
    assert.is(hung?.status, 499);
  } finally {
    await s.close();
  }
});

test('close() returns promptly with keep-alive connections and a delayed request in flight', async () => {
  const s = await startStandin();
  await call(s, 'GET', '/health'); // leaves a keep-alive connection open
  s.setFaults({ delayMs: 60_000 });
  const pending = fetch(`${s.url}/health`).catch(() => 'gone');
  await new Promise((r) => setTimeout(r, 50));
  const t0 = Date.now();
  await s.close();
  assert.ok(Date.now() - t0 < 2000, `close took ${Date.now() - t0} ms`);
  assert.is(await pending, 'gone');
});

test('script mode: prints its listening line, serves, stops cleanly on SIGTERM', async () => {
  const child = spawn(process.execPath, [SCRIPT, '--port', '0', '--host', '127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line; stderr: ${err}`)), 10_000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^inference stand-in: listening on (http:\/\/127\.0\.0\.1:\d+)\n/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
  });
  const r = await fetch(`${url}/health`);
  assert.equal(await r.json(), { status: 'ok', active_model: null, models: 0 });
  child.kill('SIGTERM');
  const t0 = Date.now();
  assert.is(await exited, 0, err);
  assert.ok(Date.now() - t0 < 5000);
  assert.match(err, /SIGTERM, stopped/);

  const usage = spawn(process.execPath, [SCRIPT, '--bogus'], { stdio: ['ignore', 'ignore', 'ignore'] });
  assert.is(await new Promise((resolve) => usage.on('close', resolve)), 2);
});

test.run();
