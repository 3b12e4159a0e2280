/**
 * The HTTP transport: real `mstore serve` processes over bare stores on 127.0.0.1, the real
 * CLI (push, pull, clone with --token-env), and hand-made requests (node:http) where a test
 * must say something the client never would. The Remote contract (remote-acceptance.ts) on
 * HttpRemote against a served bare store; then issue 5, acceptance 1-4 for HTTP:
 *   - v001-v003 with a 512 MiB safetensors file (half MSTORE_TEST_LARGE_GIB; remote-path moves the whole) pushed,
 *     cloned, every version byte for byte; v004 sends the changed bytes + 1 %;
 *   - kill -9 of push at 10 seeded random moments (MSTORE_TEST_SEED replays a run): the served
 *     store's refs name complete versions (verify --all, git fsck --strict), the server keeps
 *     serving, and the rerun sends only what was missing;
 *   - two clients pushing different versions to one ref at once, 20 rounds;
 *   - security: 401/403 without or with a read token, a chunk that does not hash to its id,
 *     names with .., absolute paths or NUL, bodies over --max-body (413), each with the store
 *     unchanged; no token in any log or error; post-receive output reaches the pusher.
 * Also the client's retries (503, refused connections, cut streams) against small fake
 * servers, TLS with a self-signed certificate, and shutdown on SIGTERM.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import http from 'node:http';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { CLI, cleanup, git, mstore, prng, tmpDir, treeDigest, writeModelDir, type RunResult } from './helpers.js';
import { expectRefusal } from './hostile-helpers.js';
import { HttpRemote } from '../src/remote/transport/http-client.js';
import { parseTokens, tokenScope } from '../src/remote/transport/http-tokens.js';
import { encodeObjects, WIRE_CONTENT_TYPE, WIRE_MAGIC, WIRE_HEADER_BYTES } from '../src/remote/wire.js';
import type { WireObject } from '../src/remote/remote.js';
import { MstoreError } from '../src/lib/errors.js';
import { bareStores, contractSuite, WIRE_GIB, iter, killWorkspace, racePushes, recordOutput, roundTrip, sha1, sha256 } from './remote-acceptance.js';

const MIB = 2 ** 20;

const READ = `read-${randomBytes(12).toString('hex')}`;
const PUSH = `push-${randomBytes(12).toString('hex')}`;
const ADMIN = `admin-${randomBytes(12).toString('hex')}`;
const TOKENS = [READ, PUSH, ADMIN];
/** Every server's stderr and every client's output of this file; each test searches its own part for tokens. */
const transcript: string[] = [];
recordOutput((text) => transcript.push(text));

function assertNoToken(text: string, what: string): void {
  for (const t of TOKENS) assert.not.ok(text.includes(t), `${what}: a token appears in the output: ${t.slice(0, 5)}...`);
}

/**
 * Each test's own output holds no token: checked as the next test starts (an assertion that
 * throws in uvu's after.each is swallowed and silently stops the suite; one in before.each fails
 * the test it runs before, naming the test that printed it). The last test checks its own.
 */
let mark = 0;
let previous = '';
test.before.each((state) => {
  const slice = transcript.slice(mark).join('\n');
  const prev = previous;
  mark = transcript.length;
  previous = state.__test__;
  if (prev) assertNoToken(slice, `the output of the test '${prev}'`);
});

// ---------------------------------------------------------------- helpers

function ok(cwd: string, args: string[], env: Record<string, string> = {}): string {
  const r = mstore(cwd, args, env);
  transcript.push(r.stdout, r.stderr);
  assert.is(r.code, 0, `mstore ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

function run(cwd: string, args: string[], env: Record<string, string> = {}): RunResult {
  const r = mstore(cwd, args, env);
  transcript.push(r.stdout, r.stderr);
  return r;
}

interface PushJson {
  refs: { ref: string; old: string | null; new: string | null }[];
  upToDate: boolean;
  bytesSent: number;
  objectsSent: number;
}
const okJson = <T>(cwd: string, args: string[], env: Record<string, string> = {}): T => JSON.parse(ok(cwd, [...args, '--json'], env)) as T;

/** The CLI without blocking this process (concurrent pushes). */
function runAsync(cwd: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd, env: { ...process.env, NO_COLOR: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (code) => {
      transcript.push(out, err);
      resolve({ code, out, err });
    });
  });
}

interface Server {
  child: ChildProcess;
  url: string;
  port: number;
  /** Its stderr so far (one line per request). */
  log(): string;
  /** Sends the signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

async function serve(store: string, tokens: string, extra: string[] = [], env: Record<string, string> = {}): Promise<Server> {
  const child = spawn(process.execPath, [CLI, 'serve', store, '--listen', '127.0.0.1:0', '--tokens', tokens, ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NO_COLOR: '1', ...env },
  });
  let err = '';
  let outText = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.stdout!.on('data', (d: Buffer) => (outText += d.toString()));
  // 'close', not 'exit': by then its stderr has been read to the end.
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`mstore serve did not start: ${err}`)), 20_000);
    const look = (): void => {
      const m = /^mstore serve: listening on (https?:\/\/127\.0\.0\.1:[0-9]+)$/m.exec(outText);
      if (m) {
        clearTimeout(t);
        resolve(m[1]);
      }
    };
    child.stdout!.on('data', look);
    void exited.then((code) => {
      clearTimeout(t);
      reject(new Error(`mstore serve exited ${code}: ${err}`));
    });
  });
  let stopped = false;
  return {
    child,
    url,
    port: Number(new URL(url).port),
    log: () => err,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (!stopped) {
        stopped = true;
        if (child.exitCode === null) child.kill(signal);
        const code = await exited;
        transcript.push(err, outText);
        return code;
      }
      return exited;
    },
  };
}

function tokensFile(dir: string): string {
  const f = path.join(dir, 'tokens');
  writeFileSync(f, `# scopes: read < push < admin\nread ${READ}\n\npush ${PUSH}\nadmin   ${ADMIN}\n`);
  chmodSync(f, 0o600);
  return f;
}

/** A bare store with its server and a workspace with a remote 'box' (token in BOX_TOKEN). */
async function box(root: string, opts: { extra?: string[]; token?: string } = {}): Promise<{ store: string; ws: string; server: Server; env: Record<string, string> }> {
  const store = path.join(root, 'store');
  ok(root, ['init', '--bare', store]);
  const server = await serve(store, tokensFile(root), opts.extra);
  const ws = path.join(root, 'ws');
  mkdirSync(ws, { recursive: true });
  ok(ws, ['init']);
  ok(ws, ['remote', 'add', 'box', server.url, '--token-env', 'BOX_TOKEN']);
  return { store, ws, server, env: { BOX_TOKEN: opts.token ?? PUSH } };
}

/** Everything of a store that a write would change: refs, ref history, packs, git objects, the index. */
function snapshot(store: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string): void => {
    for (const name of readdirSync(path.join(store, rel)).sort()) {
      const p = rel ? `${rel}/${name}` : name;
      if (p === 'lock' || p === 'tmp' || p === 'index/lock.mdb') continue;
      const full = path.join(store, p);
      const st = statSync(full);
      if (st.isDirectory()) walk(p);
      else out[p] = p.startsWith('index/') ? String(st.size) : createHash('sha256').update(readFileSync(full)).digest('hex').slice(0, 16);
    }
  };
  walk('');
  return out;
}

/** The served store holds only complete versions: mstore verify --all and git fsck --strict agree. */
function assertComplete(store: string, why: string): void {
  const v = run(store, ['verify', '--all']);
  assert.is(v.code, 0, `${why}: verify --all of the served store: ${v.stdout}${v.stderr}`);
  const f = git(path.join(store, 'git'), ['fsck', '--strict']);
  assert.is(f.code, 0, `${why}: git fsck --strict: ${f.stderr}`);
}

interface Raw {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A request made by hand: the client library would refuse to send most of these. */
function raw(url: string, method: string, route: string, opts: { token?: string; type?: string; body?: Buffer | AsyncIterable<Buffer>; headers?: Record<string, string> } = {}): Promise<Raw> {
  const u = new URL(route, url);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    if (opts.type) headers['content-type'] = opts.type;
    if (Buffer.isBuffer(opts.body)) headers['content-length'] = String(opts.body.length);
    const req = http.request(u, { method, headers, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (opts.body === undefined) req.end();
    else if (Buffer.isBuffer(opts.body)) req.end(opts.body);
    else {
      const src = opts.body;
      void (async () => {
        try {
          for await (const b of src) if (!req.write(b)) await new Promise((r) => req.once('drain', r));
          req.end();
        } catch {
          req.destroy();
        }
      })();
    }
  });
}

const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const errorOf = (r: Raw): { code: string; message: string } => (JSON.parse(r.body) as { error: { code: string; message: string } }).error;


async function wire(objs: WireObject[]): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of encodeObjects(iter(objs))) parts.push(b);
  return Buffer.concat(parts);
}

const rev = (ws: string, name: string): string => git(path.join(ws, '.mstore', 'git'), ['rev-parse', name]).stdout.trim();

/** Payload bytes the served store holds in packs (what an interrupted push left there). */
function packBytes(store: string): number {
  let n = 0;
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = path.join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else if (name.endsWith('.pack')) n += st.size;
    }
  };
  walk(path.join(store, 'packs'));
  return n;
}

async function rejects(p: Promise<unknown>, re: RegExp, what: string): Promise<MstoreError> {
  try {
    await p;
  } catch (e) {
    assert.match((e as Error).message, re, `${what}: ${(e as Error).message}`);
    transcript.push((e as Error).message);
    return e as MstoreError;
  }
  assert.unreachable(`${what}: no error`);
  throw new Error('unreachable');
}

// ---------------------------------------------------------------- the Remote contract

// A short retry backoff: a fetch stream the server cuts is retried, and how long that waits
// is no part of the contract.
const bareStore = bareStores('mstore-http-contract-');
contractSuite('http', async () => {
  const store = bareStore();
  const server = await serve(store, tokensFile(path.dirname(store)));
  const remote = new HttpRemote(server.url, { token: PUSH, backoffMs: 10 });
  return {
    remote,
    dispose: async () => {
      await remote.close();
      assert.is(await server.stop(), 0, server.log());
    },
  };
});

// ---------------------------------------------------------------- tokens and auth

test('tokens file: scopes, comments; malformed lines refuse to start naming file:line, never the token', async () => {
  const t = parseTokens(`# c\n\nread ${READ}\npush ${PUSH}\r\nadmin ${ADMIN}\n`, 'f');
  assert.is(t.length, 3);
  assert.is(tokenScope(t, READ), 'read');
  assert.is(tokenScope(t, PUSH), 'push');
  assert.is(tokenScope(t, ADMIN), 'admin');
  assert.is(tokenScope(t, `${PUSH}x`), undefined);
  assert.is(tokenScope(t, PUSH.slice(0, -1)), undefined);
  const secret = `s3cr3t-${randomBytes(8).toString('hex')}`;
  const root = tmpDir('mstore-http-tokens-');
  try {
    const store = path.join(root, 'store');
    ok(root, ['init', '--bare', store]);
    const cases: [string, RegExp][] = [
      [`read ${READ}\nwrite ${secret}\n`, /tokens:2: unknown scope 'write'/],
      [`push\n`, /tokens:1: expected 'SCOPE TOKEN'/],
      [`push ${secret} extra\n`, /tokens:1: expected 'SCOPE TOKEN'/],
      [`# only\nread short\n`, /tokens:2: the token is shorter than 16/],
      [`read ${secret}\npush ${secret}\n`, /tokens:2: the same token appears on an earlier line/],
      [`# nothing\n`, /no tokens/],
    ];
    for (const [text, re] of cases) {
      const f = path.join(root, 'tokens');
      writeFileSync(f, text);
      const r = run(root, ['serve', store, '--listen', '127.0.0.1:0', '--tokens', f]);
      assert.is(r.code, 1, `${JSON.stringify(text)}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.is(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.not.ok(r.stderr.includes(secret), 'the token is never echoed');
      assert.is(r.stdout, '');
    }
    const ws = path.join(root, 'ws');
    mkdirSync(ws);
    ok(ws, ['init']);
    assert.is(run(root, ['serve', ws, '--tokens', tokensFile(root), '--listen', '127.0.0.1:0']).code, 1, 'a workspace store is not served');
    assert.is(run(root, ['serve', store, '--tokens', tokensFile(root), '--listen', 'nonsense']).code, 2);
    assert.is(run(root, ['serve', store, '--tokens', tokensFile(root), '--max-body', '1000']).code, 2);
  } finally {
    cleanup(root);
  }
});

test('auth: /health without a token; no or unknown token 401 (WWW-Authenticate), read token pushing 403; store unchanged', async () => {
  const root = tmpDir('mstore-http-auth-');
  let server: Server | undefined;
  try {
    const b = await box(root);
    server = b.server;
    writeModelDir(b.ws, { step: 1 });
    ok(b.ws, ['commit', '-m', 'one']);
    const health = await raw(server.url, 'GET', '/health');
    assert.is(health.status, 200);
    assert.equal(JSON.parse(health.body).ok, true);
    assert.is(JSON.parse(health.body).format, 'mstore/1');

    assert.is((await raw(server.url, 'POST', '/v1/missing', { token: READ, type: 'application/json', body: Buffer.from(JSON.stringify({ kind: 'chunk', ids: [] })) })).status, 200);
    const before = snapshot(b.store);
    for (const [token, status] of [
      [undefined, 401],
      ['not-a-token-of-this-server', 401],
      [READ, 403],
    ] as const) {
      const up = await raw(server.url, 'POST', '/v1/objects', { token, type: WIRE_CONTENT_TYPE, body: await wire([{ kind: 'chunk', id: sha256(Buffer.from('x')), data: Buffer.from('x') }]) });
      assert.is(up.status, status, `upload with ${token === undefined ? 'no token' : token === READ ? 'the read token' : 'an unknown token'}`);
      assert.is(errorOf(up).code, 'EAUTH');
      if (status === 401) assert.match(String(up.headers['www-authenticate']), /^Bearer /);
      const upd = await raw(server.url, 'POST', '/v1/refs/update', { token, type: 'application/json', body: Buffer.from(JSON.stringify({ updates: [{ ref: 'refs/heads/latest', old: null, new: 'a'.repeat(40) }] })) });
      assert.is(upd.status, status);
    }
    assert.is((await raw(server.url, 'GET', '/v1/refs')).status, 401);
    assert.is((await raw(server.url, 'GET', '/v1/refs', { token: READ })).status, 200);
    assert.is((await raw(server.url, 'GET', '/v1/refs', { token: ADMIN })).status, 200);

    // Through the CLI: exit 1, one line, EAUTH's wording, no token.
    const none = run(b.ws, ['push', 'box'], {});
    assert.is(none.code, 1);
    assert.match(none.stderr, /BOX_TOKEN .*is not set|authentication required/);
    const ro = run(b.ws, ['push', 'box'], { BOX_TOKEN: READ });
    assert.is(ro.code, 1);
    assert.match(ro.stderr, /^mstore: error: http:\/\/127\.0\.0\.1:\d+: permission denied: this token has scope 'read'; the request needs 'push'\n$/);
    const wrong = run(b.ws, ['push', 'box'], { BOX_TOKEN: 'wrong-token-wrong-token' });
    assert.is(wrong.code, 1);
    assert.match(wrong.stderr, /unknown token \(check the token\)/);
    assert.not.ok(wrong.stderr.includes('wrong-token-wrong-token'));
    assert.equal(snapshot(b.store), before, 'refused pushes leave the store unchanged');

    // The push token pushes; a read token clones.
    ok(b.ws, ['push', 'box'], b.env);
    ok(root, ['clone', server.url, 'c', '--token-env', 'RT'], { RT: READ });
    assert.equal(treeDigest(path.join(root, 'c')), treeDigest(b.ws));
    await pause(300); // spawnSync blocked this process: let the server's stderr in
    const log = server.log();
    assert.match(log, /POST \/v1\/objects 401 .*scope=-/);
    assert.match(log, /POST \/v1\/objects 403 .*scope=read/);
    assert.match(log, /POST \/v1\/objects 200 .*scope=push/);
    assert.is(await server.stop(), 0);
  } finally {
    await server?.stop();
    cleanup(root);
  }
});

// ---------------------------------------------------------------- bad input and limits

test('bad input: .., absolute paths, NUL in ids or ref names 400; a chunk not matching its id 422; over --max-body 413; store unchanged', async () => {
  const root = tmpDir('mstore-http-bad-');
  let server: Server | undefined;
  try {
    const b = await box(root, { extra: ['--max-body', '20M'] });
    server = b.server;
    writeModelDir(b.ws, { step: 1 });
    ok(b.ws, ['commit', '-m', 'one']);
    ok(b.ws, ['push', 'box'], b.env);
    const url = server.url;
    const before = snapshot(b.store);
    const post = (route: string, value: unknown, token = PUSH): Promise<Raw> => raw(url, 'POST', route, { token, type: 'application/json', body: Buffer.from(JSON.stringify(value)) });

    const badIds = ['../../etc/passwd', '/etc/passwd', `${'a'.repeat(63)}\u0000`, 'a'.repeat(62) + '..', 'A'.repeat(64), ''];
    for (const id of badIds) {
      for (const route of ['/v1/missing', '/v1/fetch']) {
        const r = await post(route, { kind: 'chunk', ids: [id] }, READ);
        assert.is(r.status, 400, `${route} ${JSON.stringify(id)}`);
        assert.is(errorOf(r).code, 'EBADINPUT');
        assert.not.match(errorOf(r).message, /[\0\n]/);
      }
    }
    assert.is((await post('/v1/missing', { kind: '../chunk', ids: [] }, READ)).status, 400);
    assert.is((await post('/v1/missing', { kind: 'chunk', ids: Array.from({ length: 4097 }, (_, i) => sha256(Buffer.from(String(i)))) }, READ)).status, 400, 'more ids than BATCH_IDS');
    assert.is((await raw(url, 'POST', '/v1/missing', { token: READ, type: 'application/json', body: Buffer.from('{not json') })).status, 400);
    const unknownChunk = await post('/v1/fetch', { kind: 'chunk', ids: [sha256(Buffer.from('nobody has this'))] }, READ);
    assert.is(unknownChunk.status, 404);
    assert.is(errorOf(unknownChunk).code, 'EMISSING');

    const latest = rev(b.ws, 'latest');
    for (const ref of ['refs/heads/../../../etc/passwd', '/etc/passwd', 'refs/heads/a\u0000b', 'refs/tags/..', 'HEAD', 'refs/heads/x.lock']) {
      const r = await post('/v1/refs/update', { updates: [{ ref, old: null, new: latest }] });
      assert.is(r.status, 400, JSON.stringify(ref));
      assert.is(errorOf(r).code, 'EBADNAME');
      assert.not.match(errorOf(r).message, /[\0\n]/);
    }
    for (const value of ['../../etc/passwd', '/etc/passwd', `${latest.slice(0, 39)}\u0000`]) {
      const r = await post('/v1/refs/update', { updates: [{ ref: 'refs/heads/x', old: null, new: value }] });
      assert.is(r.status, 400, JSON.stringify(value));
    }
    assert.is((await raw(url, 'GET', '/v1/refs%2f..%2f..%2fetc', { token: READ })).status, 400, 'a non-canonical path (issue 17.11)');

    // A chunk whose bytes do not hash to its id, after a good one: 422, nothing of the request kept.
    const good = randomBytes(100_000);
    const bad = randomBytes(100_000);
    const forged = await wire([
      { kind: 'chunk', id: sha256(good), data: good },
      { kind: 'chunk', id: sha256(randomBytes(8)), data: bad },
    ]);
    const r1 = await raw(url, 'POST', '/v1/objects', { token: PUSH, type: WIRE_CONTENT_TYPE, body: forged });
    assert.is(r1.status, 422, r1.body);
    assert.is(errorOf(r1).code, 'ECORRUPT');
    assert.match(errorOf(r1).message, /do not hash to its id/);
    // A git object whose bytes are not its id; a truncated stream; bad magic; wrong type.
    const blob = Buffer.from('blob 5\0hello');
    const r2 = await raw(url, 'POST', '/v1/objects', { token: PUSH, type: WIRE_CONTENT_TYPE, body: await wire([{ kind: 'git', id: sha1(Buffer.from('other')), data: blob }]) });
    assert.is(r2.status, 422);
    const r3 = await raw(url, 'POST', '/v1/objects', { token: PUSH, type: WIRE_CONTENT_TYPE, body: forged.subarray(0, WIRE_MAGIC.length + WIRE_HEADER_BYTES + 5000) });
    assert.is(r3.status, 400, r3.body);
    assert.match(errorOf(r3).message, /truncated|ended early/);
    assert.is((await raw(url, 'POST', '/v1/objects', { token: PUSH, type: WIRE_CONTENT_TYPE, body: Buffer.from('GIF89a.........') })).status, 400);
    assert.is((await raw(url, 'POST', '/v1/objects', { token: PUSH, type: 'application/json', body: Buffer.from('{}') })).status, 415);

    // Over --max-body (20 MiB): at once when Content-Length says so, mid-stream when chunked.
    const big = await raw(url, 'POST', '/v1/objects', { token: PUSH, type: WIRE_CONTENT_TYPE, body: Buffer.alloc(21 * MIB) });
    assert.is(big.status, 413);
    assert.match(errorOf(big).message, /over the 20971520-byte limit/);
    const stream = async function* (): AsyncGenerator<Buffer> {
      yield WIRE_MAGIC;
      for (let i = 0; i < 6; i++) {
        const d = randomBytes(4 * MIB);
        yield Buffer.concat([(await wire([{ kind: 'chunk', id: sha256(d), data: d }])).subarray(WIRE_MAGIC.length, WIRE_MAGIC.length + WIRE_HEADER_BYTES), d]);
      }
      yield Buffer.alloc(WIRE_HEADER_BYTES);
    };
    const chunked = await raw(url, 'POST', '/v1/objects', { token: PUSH, type: WIRE_CONTENT_TYPE, body: stream() });
    assert.is(chunked.status, 413, chunked.body);
    const jsonBig = await raw(url, 'POST', '/v1/missing', { token: READ, type: 'application/json', body: Buffer.alloc(17 * MIB, 0x20) });
    assert.is(jsonBig.status, 413);

    assert.equal(snapshot(b.store), before, 'every rejected request left the store unchanged');
    assertComplete(b.store, 'after the bad requests');
    // The server still serves; the client keeps its requests under --max-body (GET /health says it).
    assert.is((await raw(url, 'GET', '/v1/refs', { token: READ })).status, 200);
    assert.ok(okJson<PushJson>(b.ws, ['push', 'box'], b.env).upToDate);
    writeModelDir(b.ws, { step: 2, tensors: Array.from({ length: 8 }, (_, i) => ({ name: `t${i}`, dtype: 'BF16', shape: [1024, 2048], seed: 70 + i })) });
    ok(b.ws, ['commit', '-m', 'two']);
    const p2 = okJson<PushJson>(b.ws, ['push', 'box'], b.env);
    assert.ok(p2.bytesSent > 32 * MIB, `a push larger than --max-body (${p2.bytesSent} bytes) goes through in several requests`);
    assertComplete(b.store, 'after the push over the body limit');
  } finally {
    await server?.stop();
    cleanup(root);
  }
});

test("post-receive: the hook's output reaches the pusher prefixed 'remote: '; a failing hook does not undo the push", async () => {
  const root = tmpDir('mstore-http-hook-');
  let server: Server | undefined;
  try {
    const b = await box(root);
    server = b.server;
    const hook = path.join(b.store, 'hooks', 'post-receive');
    writeFileSync(hook, '#!/bin/sh\nwhile read old new ref; do echo "deployed $ref $new (was $old)"; done\necho "to stderr" >&2\nexit 3\n');
    chmodSync(hook, 0o755);
    writeModelDir(b.ws, { step: 1 });
    ok(b.ws, ['commit', '-m', 'one']);
    const r = run(b.ws, ['push', 'box'], b.env);
    assert.is(r.code, 0, r.stderr);
    const latest = rev(b.ws, 'latest');
    assert.ok(r.stderr.includes(`remote: deployed refs/heads/latest ${latest} (was ${'0'.repeat(40)})`), r.stderr);
    assert.ok(r.stderr.includes(`remote: deployed refs/tags/v001 `), r.stderr);
    assert.match(r.stderr, /^remote: to stderr$/m);
    assert.match(r.stderr, /^remote: post-receive hook exited 3$/m);
    assert.is(git(path.join(b.store, 'git'), ['rev-parse', 'refs/heads/latest']).stdout.trim(), latest);
  } finally {
    await server?.stop();
    cleanup(root);
  }
});

// ---------------------------------------------------------------- the client against fake servers

/** A small HTTP server whose handler a test scripts; counts requests per route. */
async function fake(handler: (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void): Promise<{ url: string; hits: string[]; close(): Promise<void> }> {
  const hits: string[] = [];
  const server = http.createServer((req, res) => {
    hits.push(`${req.method} ${req.url}`);
    handler(req, res, hits.filter((h) => h === `${req.method} ${req.url}`).length);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hits,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

const json = (res: http.ServerResponse, status: number, v: unknown): void => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(v));
};

async function readBody(req: http.IncomingMessage): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of req) parts.push(b as Buffer);
  return Buffer.concat(parts);
}

test('client: retries reads on 503 and refused connections; a ref update is read back when unsure, resent only when nothing moved', async () => {
  const oid = 'b'.repeat(40);
  let refsNow: Record<string, string> = {};
  /** What the next POST /v1/refs/update does. */
  let mode: 'apply-then-cut' | '503' | '503-then-apply' = 'apply-then-cut';
  let updates = 0;
  const f = await fake((req, res, n) => {
    if (req.url === '/v1/refs' && n <= 2) return json(res, 503, { error: { code: 'EREMOTE', message: 'busy' } });
    if (req.url === '/v1/refs') return json(res, 200, { refs: refsNow });
    if (req.url === '/v1/refs/update') {
      void readBody(req).then((body) => {
        updates++;
        const u = (JSON.parse(body.toString()) as { updates: { ref: string; old: string | null; new: string }[] }).updates[0];
        if (mode === 'apply-then-cut') {
          refsNow = { [u.ref]: u.new };
          req.socket.destroy(); // applied, but the answer is lost
        } else if (mode === '503-then-apply' && updates % 2 === 1) {
          if ((refsNow[u.ref] ?? null) !== u.old) return json(res, 409, { error: { code: 'EREJECTED', message: 'rejected (non-fast-forward)' } });
          refsNow = { [u.ref]: u.new };
          res.writeHead(200, { 'content-type': 'application/x-ndjson' });
          res.end('{"remote":"hook ran"}\n{"ok":true}\n');
        } else json(res, 503, { error: { code: 'EREMOTE', message: 'down' } });
      });
      return;
    }
    json(res, 404, { error: { code: 'EBADINPUT', message: 'no' } });
  });
  const r = new HttpRemote(f.url.replace('http://', `http://user:${PUSH}@`), { backoffMs: 10 });
  try {
    assert.is(r.display, f.url);
    assert.equal([...(await r.listRefs())], []);
    assert.is(f.hits.filter((h) => h === 'GET /v1/refs').length, 3, 'two 503s, then the answer');
    // Applied but unanswered: the refs say it happened; not sent again.
    await r.updateRefs([{ ref: 'refs/heads/latest', old: null, new: oid }]);
    assert.is(updates, 1);
    // 503 and nothing moved: sent again (the compare-and-swap makes that safe), and it applies.
    mode = '503-then-apply';
    const lines: string[] = [];
    await r.updateRefs([{ ref: 'refs/heads/latest', old: oid, new: 'c'.repeat(40) }], { onRemoteOutput: (l) => lines.push(l) });
    assert.is(updates, 3);
    assert.equal(lines, ['hook ran']);
    assert.is(refsNow['refs/heads/latest'], 'c'.repeat(40));
    // Always 503: three attempts, then an error that says the refs did not move.
    mode = '503';
    const e = await rejects(r.updateRefs([{ ref: 'refs/heads/latest', old: 'c'.repeat(40), new: 'd'.repeat(40) }]), /the refs were not updated/, 'a 503 on update');
    assert.is(e.code, 'EREMOTE');
    assert.is(updates, 6);
    // Someone else moved the ref meanwhile: not resent.
    refsNow = { 'refs/heads/latest': 'e'.repeat(40) };
    await rejects(r.updateRefs([{ ref: 'refs/heads/latest', old: 'c'.repeat(40), new: 'd'.repeat(40) }]), /the refs were not updated/, 'moved by another');
    assert.is(updates, 7);
    assert.not.ok(e.message.includes(PUSH));
  } finally {
    await r.close();
    await f.close();
  }
  // Nobody listening: three tries, then EREMOTE naming the URL.
  const port = Number(new URL(f.url).port);
  const gone = new HttpRemote(`http://127.0.0.1:${port}/prefix/`, { token: PUSH, backoffMs: 10 });
  const e2 = await rejects(gone.listRefs(), /cannot reach http:\/\/127\.0\.0\.1:\d+\/prefix: .*ECONNREFUSED/, 'refused');
  assert.is(e2.code, 'EREMOTE');
  assert.not.ok(e2.message.includes(PUSH));
  await gone.close();
});

test('client: a fetch cut mid-stream resumes with the ids not yet received; a cut upload is replayed whole', async () => {
  const objs: WireObject[] = Array.from({ length: 6 }, (_, i) => {
    const d = randomBytes(300_000 + i);
    return { kind: 'chunk' as const, id: sha256(d), data: d };
  });
  const asked: string[][] = [];
  const received = new Map<string, number>();
  const f = await fake((req, res, n) => {
    void readBody(req).then(async (body) => {
      if (req.url === '/v1/fetch') {
        const ids = (JSON.parse(body.toString()) as { ids: string[] }).ids;
        asked.push(ids);
        const stream = await wire(objs.filter((o) => ids.includes(o.id)));
        res.writeHead(200, { 'content-type': WIRE_CONTENT_TYPE });
        if (n === 1) {
          // Two objects and half of the third, then the connection drops.
          res.write(stream.subarray(0, WIRE_MAGIC.length + 2 * (WIRE_HEADER_BYTES + 300_001) + 1000));
          setTimeout(() => res.destroy(), 20);
        } else res.end(stream);
      } else if (req.url === '/health') {
        json(res, 200, { ok: true, format: 'mstore/1', protocol: 1, maxBody: 2 ** 30 });
      } else if (req.url === '/v1/objects') {
        if (n === 1) return req.socket.destroy();
        let off = WIRE_MAGIC.length;
        let count = 0;
        for (;;) {
          const len = body.readUInt32LE(off + 1);
          if (body[off] === 0) break;
          const id = body.subarray(off + 5, off + 37).toString('hex');
          received.set(id, (received.get(id) ?? 0) + 1);
          off += WIRE_HEADER_BYTES + len;
          count++;
        }
        json(res, 200, { objects: count, bytes: off });
      }
    });
  });
  const r = new HttpRemote(f.url, { token: PUSH, backoffMs: 10, requestBytes: 1_000_000 });
  try {
    const got: string[] = [];
    for await (const o of r.fetch('chunk', objs.map((o) => o.id))) got.push(o.id);
    assert.equal(got.sort(), objs.map((o) => o.id).sort());
    assert.is(asked.length, 2);
    assert.equal(asked[1].sort(), objs.slice(2).map((o) => o.id).sort(), 'the second request asks only for what did not arrive');

    let progress = 0;
    const s = await r.send(iter(objs), (n) => (progress += n));
    const payload = objs.reduce((a, o) => a + o.data.length, 0);
    assert.is(s.bytes, payload);
    assert.is(progress, payload, 'progress counts each byte once, replays included');
    assert.equal([...received.keys()].sort(), objs.map((o) => o.id).sort(), 'everything arrived');
    // requestBytes 1 MB: objects 0-3 in the first request (cut once, replayed), 4-5 in the second.
    assert.is(f.hits.filter((h) => h === 'POST /v1/objects').length, 3);
    assert.ok([...received.values()].every((c) => c === 1), 'each object stored once');
  } finally {
    await r.close();
    await f.close();
  }
});

// ---------------------------------------------------------------- TLS and shutdown

test('TLS: serve --tls-cert/--tls-key; clone and push trust NODE_EXTRA_CA_CERTS; without it the certificate is refused', async () => {
  const root = tmpDir('mstore-http-tls-');
  let server: Server | undefined;
  try {
    const key = path.join(root, 'key.pem');
    const cert = path.join(root, 'cert.pem');
    const g = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { encoding: 'utf8' });
    assert.is(g.status, 0, `openssl: ${g.stderr}`);
    const store = path.join(root, 'store');
    ok(root, ['init', '--bare', store]);
    server = await serve(store, tokensFile(root), ['--tls-cert', cert, '--tls-key', key]);
    assert.match(server.url, /^https:\/\//);
    const ws = path.join(root, 'ws');
    mkdirSync(ws);
    ok(ws, ['init']);
    writeModelDir(ws, { step: 1 });
    ok(ws, ['commit', '-m', 'one']);
    ok(ws, ['remote', 'add', 'box', server.url, '--token-env', 'T']);
    const refused = run(ws, ['push', 'box'], { T: PUSH, NODE_EXTRA_CA_CERTS: '' });
    assert.is(refused.code, 1);
    assert.match(refused.stderr, /cannot reach https:\/\/127\.0\.0\.1:\d+: .*(self[- ]signed|certificate)/i);
    ok(ws, ['push', 'box'], { T: PUSH, NODE_EXTRA_CA_CERTS: cert });
    ok(root, ['clone', server.url, 'c', '--token-env', 'T'], { T: READ, NODE_EXTRA_CA_CERTS: cert });
    assert.equal(treeDigest(path.join(root, 'c')), treeDigest(ws));
    const plain = await raw(server.url.replace('https:', 'http:'), 'GET', '/health').catch((e: Error) => e);
    assert.ok(plain instanceof Error || plain.status >= 400, 'plain HTTP to the TLS port gets nowhere');
    assert.is(await server.stop('SIGINT'), 0);
  } finally {
    await server?.stop();
    cleanup(root);
  }
});

test('SIGTERM mid-push: the server lets the request in flight finish, refuses new ones, exits 0; the store is complete and the rerun pushes', async () => {
  const root = tmpDir('mstore-http-term-');
  let server: Server | undefined;
  try {
    const b = await box(root, { extra: ['--grace', '20'] });
    server = b.server;
    writeModelDir(b.ws, { step: 1, tensors: Array.from({ length: 8 }, (_, i) => ({ name: `t${i}`, dtype: 'BF16', shape: [2048, 4096], seed: 50 + i })) });
    ok(b.ws, ['commit', '-m', 'one']);
    const push = runAsync(b.ws, ['push', 'box', '--json'], b.env);
    // Stop while an upload is in flight: the server's pack writer holds a temporary pack in the
    // upload's staging area (incoming/<pid>-<rand>/tmp/), part way into a 64 MiB request (not at
    // its end, so the signal surely lands inside it).
    const incoming = path.join(b.store, 'incoming');
    const uploading = (): boolean => {
      try {
        return readdirSync(incoming).some((d) =>
          readdirSync(path.join(incoming, d, 'tmp')).some((f) => {
            const size = statSync(path.join(incoming, d, 'tmp', f)).size;
            return size > 4 * MIB && size < 40 * MIB;
          }),
        );
      } catch {
        return false; // not there yet, or removed meanwhile
      }
    };
    for (let i = 0; i < 2000 && !uploading(); i++) await pause(5);
    assert.ok(uploading(), 'the upload began');
    const t0 = Date.now();
    assert.is(await server.stop('SIGTERM'), 0, server.log());
    assert.ok(Date.now() - t0 < 20_000, 'within the grace period');
    const after = server.log().split(/SIGTERM: shutting down.*\n/)[1] ?? '';
    assert.match(after, /POST \/v1\/objects 200 /, `the upload in flight finished after the signal: ${server.log()}`);
    const p = await push;
    if (p.code !== 0) {
      assert.is(p.code, 1);
      assert.is(p.err.trim().split('\n').length, 1, p.err);
      assert.match(p.err, /shutting down|cannot reach/);
    }
    assertComplete(b.store, 'after SIGTERM');
    server = await serve(b.store, path.join(root, 'tokens'));
    ok(b.ws, ['remote', 'remove', 'box']);
    ok(b.ws, ['remote', 'add', 'box', server.url, '--token-env', 'BOX_TOKEN']);
    ok(b.ws, ['push', 'box'], b.env);
    assertComplete(b.store, 'after the rerun');
    assert.is(git(path.join(b.store, 'git'), ['rev-parse', 'refs/heads/latest']).stdout.trim(), rev(b.ws, 'latest'));
  } finally {
    await server?.stop();
    cleanup(root);
  }
});

// ---------------------------------------------------------------- acceptance through the CLI

test(`${WIRE_GIB} GiB x 3 versions pushed over HTTP, cloned, every version byte for byte; v004 sends the changed bytes + 1 %`, async () => {
  const root = tmpDir('mstore-http-large-');
  let server: Server | undefined;
  try {
    const b = await box(root);
    server = b.server;
    await roundTrip(root, b.ws, {
      label: 'http',
      gib: WIRE_GIB,
      remote: 'box',
      env: b.env,
      cloneUrl: server.url,
      cloneArgs: ['--token-env', 'RT'],
      cloneEnv: { RT: READ },
      check: (why) => assertComplete(b.store, why),
    });
  } finally {
    await server?.stop();
    cleanup(root);
  }
});

test('kill -9 of push at 10 random moments: the served refs name complete versions, the server keeps serving; the rerun sends only what was missing', async () => {
  const seed = Number(process.env.MSTORE_TEST_SEED ?? Date.now() % 100000);
  console.log(`  remote-http kill test seed ${seed} (MSTORE_TEST_SEED=${seed} replays it)`);
  const rnd = prng(seed);
  const root = tmpDir('mstore-http-kill-');
  const servers: Server[] = [];
  try {
    const tokens = tokensFile(root);
    const ws = killWorkspace(root);
    let n = 0;
    /** A fresh bare store and its server, registered as remote 'box'. */
    const fresh = async (): Promise<{ store: string; server: Server }> => {
      const store = path.join(root, `store${n++}`);
      ok(root, ['init', '--bare', store]);
      const server = await serve(store, tokens);
      servers.push(server);
      run(ws, ['remote', 'remove', 'box']);
      ok(ws, ['remote', 'add', 'box', server.url, '--token-env', 'BOX_TOKEN']);
      return { store, server };
    };
    const env = { BOX_TOKEN: PUSH };
    await fresh();
    const t0 = Date.now();
    const full = okJson<PushJson>(ws, ['push', 'box'], env);
    const pushMs = Date.now() - t0;
    let cur = await fresh();
    let killed = 0;
    for (let round = 0; round < 10; round++) {
      const at = Math.floor(rnd() * pushMs);
      const child = spawn(process.execPath, [CLI, 'push', 'box'], { cwd: ws, stdio: 'ignore', env: { ...process.env, ...env } });
      const gone = new Promise((r) => child.once('exit', r));
      await pause(at);
      if (child.exitCode === null) {
        child.kill('SIGKILL');
        killed++;
      }
      await gone;
      const why = `seed ${seed}, round ${round} (kill at ${at} of ${pushMs} ms)`;
      // The server notices the cut and publishes what arrived whole; give it a moment to do so.
      await pause(300);
      assertComplete(cur.store, why);
      assert.is((await raw(cur.server.url, 'GET', '/health')).status, 200, `${why}: the server still answers`);
      if (git(path.join(cur.store, 'git'), ['for-each-ref']).stdout.trim()) {
        const out = path.join(root, `clone${round}`);
        ok(root, ['clone', cur.server.url, out, '--no-checkout', '--token-env', 'RT'], { RT: READ });
        assert.is(run(out, ['verify', '--all']).code, 0, why);
        cleanup(out);
        await cur.server.stop();
        cur = await fresh();
      }
    }
    assert.ok(killed >= 5, `seed ${seed}: only ${killed} of 10 kills landed mid-push`);

    // Kill once more half-way, then the rerun. The server stores every object that arrived
    // whole when the body breaks (it publishes them), so the rerun sends what the store lacks,
    // plus at most what was being sealed when the kill came: one published pack's worth
    // (64 MiB, StoreRemote's PUBLISH_EVERY) and one chunk (up to 8 MiB).
    cur = await fresh();
    const child = spawn(process.execPath, [CLI, 'push', 'box'], { cwd: ws, stdio: 'ignore', env: { ...process.env, ...env } });
    const gone = new Promise((r) => child.once('exit', r));
    await pause(pushMs / 2);
    child.kill('SIGKILL');
    await gone;
    await pause(300);
    const before = packBytes(cur.store);
    const rerun = okJson<PushJson>(ws, ['push', 'box'], env);
    const bound = Math.max(0, full.bytesSent - before) + 64 * MIB + 8 * MIB;
    assert.ok(rerun.bytesSent <= bound, `seed ${seed}: rerun sent ${rerun.bytesSent}; the store held ${before} of ${full.bytesSent} (bound ${bound})`);
    console.log(`  kill half-way: ${(before / MIB).toFixed(0)} MiB stored of ${(full.bytesSent / MIB).toFixed(0)}; the rerun sent ${(rerun.bytesSent / MIB).toFixed(0)} MiB`);
    assertComplete(cur.store, 'after the rerun');
    ok(root, ['clone', cur.server.url, 'out', '--token-env', 'RT'], { RT: READ });
    assert.equal(treeDigest(path.join(root, 'out')), treeDigest(ws));
    for (const s of servers) assert.not.match(s.log(), /error: .*(TypeError|RangeError|Cannot read)/, 'no crash in the server log');
  } finally {
    for (const s of servers) await s.stop();
    cleanup(root);
  }
});

test('two clients push different versions to the same ref at once, 20 rounds: one wins, the other is rejected, nothing lost', async () => {
  const root = tmpDir('mstore-http-race-');
  let server: Server | undefined;
  try {
    const bx = await box(root);
    server = bx.server;
    const a = bx.ws;
    writeModelDir(a, { step: 1 });
    ok(a, ['commit', '-m', 'base']);
    ok(a, ['push', 'box'], bx.env);
    ok(root, ['clone', server.url, 'b', '--token-env', 'BOX_TOKEN'], bx.env);
    const b = path.join(root, 'b');
    const latest = await racePushes(a, b, 20, () => git(path.join(bx.store, 'git'), ['rev-parse', 'refs/heads/latest']).stdout.trim(), bx.env, ['box', 'origin']);
    const sgit = path.join(bx.store, 'git');
    assert.is(git(sgit, ['rev-list', '--count', 'refs/heads/latest']).stdout.trim(), '21', 'every round added one version on top of the last');
    assertComplete(bx.store, 'after 20 rounds');
    ok(root, ['clone', server.url, 'c', '--no-checkout', '--token-env', 'RT'], { RT: READ });
    assert.is(rev(path.join(root, 'c'), 'latest'), latest);
  } finally {
    await server?.stop();
    cleanup(root);
  }
});

test('pull from an HTTP remote whose pack was tampered with: refused with one line naming the chunk, no name in the local store moved', async () => {
  const root = tmpDir('mstore-http-tamper-');
  let server: Server | undefined;
  try {
    const b = await box(root);
    server = b.server;
    writeModelDir(b.ws, { step: 1 });
    ok(b.ws, ['commit', '-m', 'one']);
    ok(b.ws, ['push', 'box'], b.env);
    // flip the middle byte (tensor data) of every pack of the served store
    let packs = 0;
    for (const sub of readdirSync(path.join(b.store, 'packs'))) {
      for (const name of readdirSync(path.join(b.store, 'packs', sub)).filter((n) => n.endsWith('.pack'))) {
        const f = path.join(b.store, 'packs', sub, name);
        const data = readFileSync(f);
        data[data.length >> 1] ^= 0xff;
        chmodSync(f, 0o644);
        writeFileSync(f, data);
        packs++;
      }
    }
    assert.ok(packs > 0, 'the served store has packs');
    const c = path.join(root, 'c');
    mkdirSync(c);
    ok(c, ['init']);
    ok(c, ['remote', 'add', 'box', server.url, '--token-env', 'RT']);
    // refs, ref history and config byte for byte (received objects no name reaches may stay: gc frees them)
    const names = (): string => [git(path.join(c, '.mstore', 'git'), ['for-each-ref']).stdout, ...['reflog.jsonl', 'config.json'].map((f) => (existsSync(path.join(c, '.mstore', f)) ? readFileSync(path.join(c, '.mstore', f), 'utf8') : '(none)'))].join('\n--\n');
    const before = names();
    expectRefusal(run(c, ['pull', 'box'], { RT: READ }), 1, /chunk [0-9a-f]{64}.*(do not hash|damaged|hash mismatch)/, 'pull from a tampered HTTP remote');
    assert.is(names(), before, 'no ref, ref history entry or config of the local store changed');
    assert.is(run(c, ['fsck']).code, 0, 'fsck clean');
    assert.is(run(c, ['log', '--json']).stdout.trim(), '[]', 'no version arrived');
  } finally {
    await server?.stop();
    cleanup(root);
  }
});

test('no token in the server log, client output or error messages: push, clone, refused and near-miss tokens, MSTORE_DEBUG', async () => {
  const root = tmpDir('mstore-http-leak-');
  const start = transcript.length;
  let server: Server | undefined;
  try {
    const b = await box(root);
    server = b.server;
    writeModelDir(b.ws, { step: 1 });
    ok(b.ws, ['commit', '-m', 'one']);
    assert.is(run(b.ws, ['push', 'box'], { BOX_TOKEN: READ }).code, 1, 'a read token cannot push');
    assert.is(run(b.ws, ['push', 'box'], { BOX_TOKEN: `${PUSH}x` }).code, 1, 'a near-miss token is unknown');
    assert.is(run(b.ws, ['push', 'box'], { BOX_TOKEN: `${PUSH}x`, MSTORE_DEBUG: '1' }).code, 1, 'the same with a stack trace');
    ok(b.ws, ['push', 'box', '--json'], b.env);
    ok(root, ['clone', server.url, 'c', '--token-env', 'RT'], { RT: READ });
    ok(path.join(root, 'c'), ['pull', 'origin', '--json'], { RT: READ });
    await pause(300); // spawnSync blocked this process: let the server's stderr in
    assert.is(await server.stop(), 0);
  } finally {
    await server?.stop();
    cleanup(root);
  }
  const mine = transcript.slice(start).join('\n');
  // The transcript really holds this test's refusals, the server's log and the successful runs.
  assert.match(mine, /permission denied: this token has scope 'read'/);
  assert.match(mine, /unknown token/);
  assert.match(mine, /POST \/v1\/objects 200 .*scope=push/);
  assert.match(mine, /GET \/v1\/refs 200 .*scope=read/);
  assertNoToken(mine, 'push, clone and refusals');
});

test.run();
