/**
 * `mstore serve` against hostile clients (issue 17, items 3, 4, 5, 6, 8, 9, 10's request half and
 * 11): a real server on 127.0.0.1, hand-made requests over raw sockets where a test must say
 * something the real client never would, and the real CLI for the pushes that must keep working.
 * Each case asserts status and body, and that the served store afterwards passes fsck and
 * `verify --all` with every pushed version still named. Bounded loops only; the slow uploader
 * drips for at most a few seconds.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import net from 'node:net';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes, createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, realpathSync, renameSync, writeFileSync, chmodSync } from 'node:fs';
import { CLI, cleanup, git, layerTensors, mstore, tmpDir, writeModelDir } from './helpers.js';
import { ENV as BOX_ENV, commitVersion, ok as boxOk, withBox } from './deploy-helpers.js';
import { decodeObjects, WIRE_CONTENT_TYPE, WIRE_HEADER_BYTES, WIRE_MAGIC } from '../src/remote/wire.js';
import type { WireObject } from '../src/remote/remote.js';

const READ = `read-${randomBytes(12).toString('hex')}`;
const PUSH = `push-${randomBytes(12).toString('hex')}`;
const ADMIN = `admin-${randomBytes(12).toString('hex')}`;
const MIB = 2 ** 20;

const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function ok(cwd: string, args: string[], env: Record<string, string> = {}): string {
  const r = mstore(cwd, args, env);
  assert.is(r.code, 0, `mstore ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

interface Server {
  child: ChildProcess;
  url: string;
  port: number;
  log(): string;
  stop(): Promise<void>;
}

async function serve(store: string, tokens: string, extra: string[] = []): Promise<Server> {
  const child = spawn(process.execPath, [CLI, 'serve', store, '--listen', '127.0.0.1:0', '--tokens', tokens, ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NO_COLOR: '1' },
  });
  let err = '';
  let out = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`mstore serve did not start: ${err}`)), 20_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/127\.0\.0\.1:[0-9]+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(m[1]);
      }
    });
    void exited.then(() => {
      clearTimeout(t);
      reject(new Error(`mstore serve exited ${child.exitCode}: ${err}`));
    });
  });
  return {
    child,
    url,
    port: Number(new URL(url).port),
    log: () => err,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

function tokensFile(dir: string): string {
  const f = path.join(dir, 'tokens');
  writeFileSync(f, `read ${READ}\npush ${PUSH}\nadmin ${ADMIN}\n`);
  chmodSync(f, 0o600);
  return f;
}

interface Box {
  root: string;
  store: string;
  ws: string;
  server: Server;
  env: Record<string, string>;
  /** Version tags pushed so far: each must stay intact. */
  pushed: string[];
}

/** A bare store served with read/push/admin tokens, and a workspace that pushed v001 (and more). */
async function box(root: string, opts: { extra?: string[]; tensors?: number } = {}): Promise<Box> {
  const store = path.join(root, 'store');
  ok(root, ['init', '--bare', store]);
  const server = await serve(store, tokensFile(root), opts.extra);
  const ws = path.join(root, 'ws');
  mkdirSync(ws, { recursive: true });
  ok(ws, ['init']);
  writeModelDir(ws, { tensors: layerTensors(opts.tensors ?? 4, 256, 1024) });
  ok(ws, ['commit', '-m', 'first']);
  const env = { BOX_TOKEN: PUSH };
  ok(ws, ['remote', 'add', 'box', server.url, '--token-env', 'BOX_TOKEN']);
  ok(ws, ['push', 'box'], env);
  return { root, store, ws, server, env, pushed: ['v001'] };
}

/**
 * One served store for the cases below (a server start and a first push cost seconds on a
 * busy machine); `--max-fetch-bytes 1M` for the amplification case, harmless for the others.
 * Each case ends with assertServed.
 */
let shared: Box | undefined;
let sharedRoot = '';

async function withServeBox(what: string, fn: (b: Box) => Promise<void>): Promise<void> {
  if (!shared) {
    sharedRoot = tmpDir('mstore-hserve-');
    shared = await box(sharedRoot, { extra: ['--max-fetch-bytes', '1M'], tensors: 8 });
  }
  await fn(shared);
  assertServed(shared, what);
}

test.after(async () => {
  await shared?.server.stop();
  if (sharedRoot) cleanup(sharedRoot);
});

/** The served store passes fsck and verify --all, and still names every version pushed to it. */
function assertServed(b: { store: string; pushed: string[] }, what: string): void {
  const f = mstore(b.store, ['fsck']);
  assert.is(f.code, 0, `${what}: fsck of the served store: ${f.stdout}${f.stderr}`);
  const v = mstore(b.store, ['verify', '--all']);
  assert.is(v.code, 0, `${what}: verify --all of the served store: ${v.stdout}${v.stderr}`);
  const refs = git(path.join(b.store, 'git'), ['for-each-ref', '--format=%(refname)', 'refs/tags']).stdout;
  for (const t of b.pushed) assert.ok(refs.split('\n').includes(`refs/tags/${t}`), `${what}: the served store still has ${t}`);
}

interface Raw {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** One request written by hand on a fresh socket (Connection: close); the answer read to its end. */
function rawRequest(port: number, head: string, body?: Buffer): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const parts: Buffer[] = [];
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer to ${head.split('\r\n')[0]}`));
    }, 15_000);
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(t);
      const text = Buffer.concat(parts).toString('utf8');
      const [top, ...rest] = text.split('\r\n\r\n');
      const lines = (top ?? '').split('\r\n');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(lines[0] ?? '');
      const headers: Record<string, string> = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      resolve({ status: m ? Number(m[1]) : 0, headers, body: rest.join('\r\n\r\n') });
    });
    s.write(head);
    if (!body) return;
    // In pieces, and no more once an answer has come (a refusal before the body was read).
    void (async () => {
      for (let o = 0; o < body.length && !parts.length && !s.destroyed; o += 256 * 1024) {
        if (!s.write(body.subarray(o, o + 256 * 1024))) await new Promise((r) => s.once('drain', r).once('close', r));
      }
    })();
  });
}

function request(port: number, method: string, target: string, opts: { token?: string; type?: string; body?: Buffer } = {}): Promise<Raw> {
  let head = `${method} ${target} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\nconnection: close\r\n`;
  if (opts.token) head += `authorization: Bearer ${opts.token}\r\n`;
  if (opts.type) head += `content-type: ${opts.type}\r\n`;
  head += `content-length: ${opts.body?.length ?? 0}\r\n\r\n`;
  return rawRequest(port, head, opts.body);
}

const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));
const errorOf = (r: Raw): { code: string; message: string } => (JSON.parse(r.body) as { error: { code: string; message: string } }).error;

/** Objects of a wire-format answer body (a well-formed stream, or decodeObjects throws). */
async function wireObjects(body: Buffer): Promise<WireObject[]> {
  const out: WireObject[] = [];
  async function* src(): AsyncGenerator<Buffer> {
    yield body;
  }
  for await (const o of decodeObjects(src())) out.push(o);
  return out;
}

/** POST /v1/fetch answered as raw bytes (the body of a wire stream is binary). */
function fetchRaw(port: number, token: string, kind: string, ids: string[]): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const body = json({ kind, ids });
    const s = net.connect(port, '127.0.0.1');
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('error', reject);
    s.on('close', () => {
      const all = Buffer.concat(parts);
      const end = all.indexOf('\r\n\r\n');
      const head = all.subarray(0, end).toString('latin1');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
      let rest = all.subarray(end + 4);
      if (/transfer-encoding: chunked/i.test(head)) {
        const pieces: Buffer[] = [];
        for (;;) {
          const nl = rest.indexOf('\r\n');
          const n = parseInt(rest.subarray(0, nl).toString('latin1'), 16);
          if (!n) break;
          pieces.push(rest.subarray(nl + 2, nl + 2 + n));
          rest = rest.subarray(nl + 2 + n + 2);
        }
        rest = Buffer.concat(pieces);
      }
      resolve({ status, body: rest });
    });
    s.write(`POST /v1/fetch HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer ${token}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`);
    s.write(body);
  });
}

/** The chunk ids of a version's file, through the server's own file manifests. */
async function chunkIdsOf(b: Box, rev: string, file: string): Promise<string[]> {
  const show = JSON.parse(ok(b.ws, ['show', rev, '--json'])) as { files: { path: string; oid: string }[] };
  const oid = show.files.find((f) => f.path === file)!.oid;
  const r = await fetchRaw(b.server.port, READ, 'file', [oid]);
  assert.is(r.status, 200);
  const [m] = await wireObjects(r.body);
  const ids: string[] = [];
  for (let o = 0; o < m.data.length; o += 36) ids.push(m.data.subarray(o, o + 32).toString('hex'));
  return ids;
}

function vm(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

// ---------------------------------------------------------------- start-up and request lines

test('#17.9 a tokens-file line written the wrong way round names file and line, never any part of the token', () => {
  const root = tmpDir('mstore-hserve-tokens-');
  try {
    const store = path.join(root, 'store');
    ok(root, ['init', '--bare', store]);
    const secret = `Zq8Kx93mLpQ7-${randomBytes(10).toString('hex')}`;
    for (const [text, line] of [
      [`${secret} push\n`, 1],
      [`read ${READ}\n# ok\n${secret} read\n`, 3],
      [`${secret}\n`, 1],
    ] as const) {
      const f = path.join(root, 'tokens');
      writeFileSync(f, text);
      chmodSync(f, 0o600);
      const r = mstore(root, ['serve', store, '--listen', '127.0.0.1:0', '--tokens', f]);
      assert.is(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`tokens:${line}: `));
      assert.is(r.stderr.trim().split('\n').length, 1, r.stderr);
      for (let i = 0; i + 6 <= secret.length; i++) assert.not.ok(r.stderr.includes(secret.slice(i, i + 6)), `the error shows part of the token: ${r.stderr}`);
    }
  } finally {
    cleanup(root);
  }
});

test('#17.10 #17.11 a request line that is no path, and non-canonical paths: 400 before routing, no 500, no error log', () =>
  withServeBox('paths', async (b) => {
    const port = b.server.port;
    const bad = await rawRequest(port, `GET http://[ HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer ${READ}\r\n\r\n`);
    assert.is(bad.status, 400, `GET http://[ : ${bad.status} ${bad.body}`);
    for (const target of ['//x/v1/refs', '/v1\\refs', '/v1/./refs', '/v1/refs/../refs', '/v1//refs', '/v1/%72efs', 'http://127.0.0.1/v1/refs']) {
      const r = await request(port, 'GET', target, { token: READ });
      assert.is(r.status, 400, `${target}: ${r.status} ${r.body}`);
      assert.is(errorOf(r).code, 'EBADINPUT', target);
      assert.match(errorOf(r).message, /path/, target);
    }
    // The canonical path still works, with and without a query string.
    assert.is((await request(port, 'GET', '/v1/refs', { token: READ })).status, 200);
    assert.is((await request(port, 'GET', '/v1/refs?x=1', { token: READ })).status, 200);
    await pause(200);
    assert.not.match(b.server.log(), /error:/, `the server logged an error:\n${b.server.log()}`);
  }));

// ---------------------------------------------------------------- error bodies

test('#17.8 error bodies name objects and versions, never server paths (read token)', () =>
  withServeBox('errors', async (b) => {
    const port = b.server.port;
    const roots = [b.root, realpathSync(b.root), b.store];
    const noPath = (r: Raw, what: string): void => {
      for (const p of roots) assert.not.ok(r.body.includes(p), `${what}: the body shows a server path: ${r.body}`);
      assert.not.match(r.body, /"\/|'\/| \/(tmp|home|root|srv|var)\b/, `${what}: the body shows an absolute path: ${r.body}`);
    };
    const unknown = 'ab'.repeat(32);
    for (const [kind, id] of [['chunk', unknown], ['file', unknown], ['git', 'cd'.repeat(20)]] as const) {
      const r = await request(port, 'POST', '/v1/fetch', { token: READ, type: 'application/json', body: json({ kind, ids: [id] }) });
      assert.is(r.status, 404, `${kind}: ${r.body}`);
      assert.match(errorOf(r).message, new RegExp(id), `${kind}: names the object`);
      noPath(r, `fetch of an unknown ${kind}`);
    }
    // A pack the server cannot read (moved away for the request, put back after): a 5xx that
    // names the chunk, not the file.
    const ids = await chunkIdsOf(b, 'v001', 'model.safetensors');
    const packs = path.join(b.store, 'packs');
    const sub = readdirSync(packs).filter((d) => /^[0-9a-f]{2}$/.test(d));
    const moved: [string, string][] = [];
    for (const d of sub) for (const f of readdirSync(path.join(packs, d))) moved.push([path.join(packs, d, f), path.join(b.root, f)]);
    for (const [from, to] of moved) renameSync(from, to);
    try {
      const r = await request(port, 'POST', '/v1/fetch', { token: READ, type: 'application/json', body: json({ kind: 'chunk', ids: [ids[0]] }) });
      assert.ok(r.status >= 400, `${r.status} ${r.body}`);
      assert.match(errorOf(r).message, new RegExp(ids[0]), 'names the chunk');
      noPath(r, 'fetch from a missing pack');
    } finally {
      for (const [from, to] of moved) renameSync(to, from);
    }
    const d = await request(port, 'GET', '/v1/deploy', { token: READ });
    noPath(d, 'GET /v1/deploy');
  }));

// ---------------------------------------------------------------- bodies, concurrency, memory

test('#17.5 id requests: bodies over 512 KiB get 413 before parsing; over 4 heavy requests per token 429, over 8 in all 503, both with Retry-After', () =>
  withServeBox('limits', async (b) => {
    const port = b.server.port;
    // 9,000 well-formed ids: ~600 KB, under the old 16 MiB limit.
    const many = json({ kind: 'chunk', ids: Array.from({ length: 9000 }, (_, i) => createHash('sha256').update(String(i)).digest('hex')) });
    for (const route of ['/v1/missing', '/v1/fetch']) {
      const r = await request(port, 'POST', route, { token: READ, type: 'application/json', body: many });
      assert.is(r.status, 413, `${route}: ${r.status} ${r.body}`);
      assert.match(errorOf(r).message, /over the \d+-byte limit/);
    }
    // Without a length (chunked), counted while read.
    const chunked = await rawRequest(
      port,
      `POST /v1/missing HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer ${READ}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n${many.length.toString(16)}\r\n`,
      Buffer.concat([many, Buffer.from('\r\n0\r\n\r\n')]),
    );
    assert.is(chunked.status, 413, `chunked: ${chunked.status} ${chunked.body}`);

    // Stalled requests (headers sent, body never) hold their slots.
    const held: net.Socket[] = [];
    const stall = (token: string): Promise<void> =>
      new Promise((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => {
          s.write(`POST /v1/fetch HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n`);
          resolve();
        });
        s.on('error', () => undefined);
        held.push(s);
      });
    const small = json({ kind: 'chunk', ids: [] });
    try {
      for (let i = 0; i < 4; i++) await stall(READ);
      await pause(300);
      const perToken = await request(port, 'POST', '/v1/missing', { token: READ, type: 'application/json', body: small });
      assert.is(perToken.status, 429, `5th request of one token: ${perToken.status} ${perToken.body}`);
      assert.ok(Number(perToken.headers['retry-after']) > 0, 'Retry-After');
      assert.match(errorOf(perToken).message, /too many/);
      for (let i = 0; i < 4; i++) await stall(PUSH);
      await pause(300);
      const total = await request(port, 'POST', '/v1/missing', { token: ADMIN, type: 'application/json', body: small });
      assert.is(total.status, 503, `9th request in all: ${total.status} ${total.body}`);
      assert.ok(Number(total.headers['retry-after']) > 0, 'Retry-After');
      // Cheap requests are not counted.
      assert.is((await request(port, 'GET', '/v1/refs', { token: READ })).status, 200);
    } finally {
      for (const s of held) s.destroy();
    }
    await pause(300);
    assert.is((await request(port, 'POST', '/v1/missing', { token: READ, type: 'application/json', body: small })).status, 200, 'slots come back');
  }));

test('acceptance 3: 50 concurrent heavy read requests keep the server under 400 MB and it returns within 50 MB of idle', () =>
  withServeBox('memory', async (b) => {
    const port = b.server.port;
    const pid = b.server.child.pid!;
    for (let i = 0; i < 3; i++) await request(port, 'POST', '/v1/missing', { token: READ, type: 'application/json', body: json({ kind: 'chunk', ids: [] }) });
    await pause(500);
    const idle = vm(pid).rss;
    // 15 MiB of ids each: the old server parsed every one of them.
    const ids: string[] = [];
    for (let i = 0; ids.length * 67 < 15 * MIB; i++) ids.push(createHash('sha256').update(String(i)).digest('hex'));
    const big = json({ kind: 'chunk', ids });
    const tokens = [READ, PUSH, ADMIN];
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, vm(pid).rss)), 20);
    const statuses = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        request(port, 'POST', i % 2 ? '/v1/fetch' : '/v1/missing', { token: tokens[i % 3], type: 'application/json', body: big }).then(
          (r) => r.status,
          () => 0,
        ),
      ),
    );
    clearInterval(sampler);
    peak = Math.max(peak, vm(pid).hwm);
    assert.ok(peak < 400 * MIB, `the server's RSS peaked at ${(peak / MIB).toFixed(0)} MB (idle ${(idle / MIB).toFixed(0)} MB)`);
    let after = vm(pid).rss;
    for (let i = 0; i < 25 && after > idle + 50 * MIB; i++) {
      await pause(200);
      after = vm(pid).rss;
    }
    assert.ok(after <= idle + 50 * MIB, `after the load the server holds ${(after / MIB).toFixed(0)} MB, idle was ${(idle / MIB).toFixed(0)} MB`);
    // Refused before their bodies were read: over the size (413) or over the slots (429, 503).
    for (const s of statuses) assert.ok([413, 429, 503, 0].includes(s), `status ${s}`);
    assert.is((await request(port, 'GET', '/v1/refs', { token: READ })).status, 200, 'still serving');
  }));

// ---------------------------------------------------------------- amplification

test('#17.6 fetch: duplicate ids answered once, the bytes of one answer bounded (--max-fetch-bytes); the real client asks again for the rest', () =>
  withServeBox('fetch', async (b) => {
    const port = b.server.port;
    const ids = await chunkIdsOf(b, 'v001', 'model.safetensors');
    assert.ok(ids.length >= 4, `${ids.length} chunks`);
    const asked: string[] = [];
    for (let i = 0; asked.length < 4096; i++) asked.push(ids[i % ids.length]);
    const r = await fetchRaw(port, READ, 'chunk', asked);
    assert.is(r.status, 200);
    const objs = await wireObjects(r.body);
    assert.ok(objs.length >= 1, 'at least one object');
    assert.is(new Set(objs.map((o) => o.id)).size, objs.length, 'each object once');
    const payload = objs.reduce((a, o) => a + o.data.length, 0);
    const largest = Math.max(...objs.map((o) => o.data.length));
    assert.ok(payload <= MIB + largest, `${payload} payload bytes in one answer, over 1 MiB + one object`);
    assert.ok(objs.length < ids.length, `${objs.length} of ${ids.length} objects in one answer: not bounded`);
    // The client asks again for what an answer left out: a clone gets every byte.
    const clone = path.join(b.root, 'clone');
    ok(b.root, ['clone', b.server.url, clone, '--token-env', 'RT'], { RT: READ });
    ok(clone, ['verify', '--all']);
  }));

// ---------------------------------------------------------------- the store lock

test('#17.4 acceptance 2: a client uploading at 1 KB/s does not hold the store lock; another push completes in under 5 s', () =>
  withServeBox('slow upload', async (b) => {
    const port = b.server.port;
    // The same small push without a slow uploader: on a machine so loaded that it alone takes
    // over 2.5 s, the 5 s bound becomes twice that (the unfixed server blocks it for minutes).
    await commitVersion(b.ws, 76, 64);
    const t0 = Date.now();
    ok(b.ws, ['push', 'box'], b.env);
    const baseline = Date.now() - t0;
    b.pushed.push('v002');
    const bound = Math.max(5000, 2 * baseline);
    const slow = net.connect(port, '127.0.0.1');
    slow.on('error', () => undefined);
    await new Promise<void>((r) => slow.once('connect', () => r()));
    slow.write(`POST /v1/objects HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${PUSH}\r\ncontent-type: ${WIRE_CONTENT_TYPE}\r\ncontent-length: ${64 * MIB}\r\n\r\n`);
    const h = Buffer.alloc(WIRE_HEADER_BYTES);
    h.writeUInt8(1, 0);
    h.writeUInt32LE(8 * MIB, 1);
    randomBytes(32).copy(h, 5);
    slow.write(Buffer.concat([WIRE_MAGIC, h]));
    const drip = setInterval(() => slow.write(randomBytes(1024)), 1000);
    try {
      await pause(1500);
      await commitVersion(b.ws, 77, 64);
      const started = Date.now();
      const push = spawn(process.execPath, [CLI, 'push', 'box'], { cwd: b.ws, env: { ...process.env, NO_COLOR: '1', ...b.env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      push.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const killer = setTimeout(() => push.kill('SIGKILL'), Math.max(20_000, 2 * bound));
      const code = await new Promise<number | null>((r) => push.once('close', (c) => r(c)));
      clearTimeout(killer);
      const ms = Date.now() - started;
      assert.is(code, 0, `push while another client uploads slowly: exit ${code} after ${ms} ms: ${err}`);
      assert.ok(ms < bound, `the push took ${ms} ms while another client uploaded at 1 KB/s (bound ${bound} ms; alone: ${baseline} ms)`);
      b.pushed.push('v003');
      // A local writer is not blocked either.
      const f = mstore(b.store, ['fsck']);
      assert.is(f.code, 0, `fsck during the slow upload: ${f.stderr}`);
    } finally {
      clearInterval(drip);
      slow.destroy();
    }
    // The cut upload leaves nothing behind once its handler ends.
    const incoming = path.join(b.store, 'incoming');
    for (let i = 0; i < 30 && existsSync(incoming) && readdirSync(incoming).length; i++) await pause(100);
    assert.equal(existsSync(incoming) ? readdirSync(incoming) : [], [], 'staging areas of ended uploads are removed');
  }));

// ---------------------------------------------------------------- deploy names

/** A new version on top of `latest` whose version.json says `version` (a pusher can write any), tagged `tag`. */
function forgeVersion(ws: string, tag: string, version: string): void {
  const gd = path.join(ws, '.mstore', 'git');
  const envg = { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@x', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@x', GIT_INDEX_FILE: path.join(ws, 'forge.index') };
  const g = (args: string[], input?: string): string => {
    const r = spawnSync('git', [`--git-dir=${gd}`, ...args], { encoding: 'utf8', env: envg, input });
    assert.is(r.status, 0, `git ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.trim();
  };
  const head = g(['rev-parse', 'refs/heads/latest']);
  const meta = JSON.parse(g(['show', `${head}:.mstore/version.json`])) as Record<string, unknown>;
  meta.version = version;
  meta.number = Number(tag.slice(1));
  const blob = g(['hash-object', '-w', '--stdin'], `${JSON.stringify(meta, null, 2)}\n`);
  g(['read-tree', head]);
  g(['update-index', '--add', '--cacheinfo', `100644,${blob},.mstore/version.json`]);
  const tree = g(['write-tree']);
  const commit = g(['commit-tree', tree, '-p', head, '-m', `forged ${tag}`]);
  g(['tag', '-a', tag, commit, '-m', tag]);
  g(['update-ref', 'refs/heads/latest', commit]);
}

test('#17.3 deploy directories come from the ref and commit the box resolved, never from pushed metadata', () =>
  withBox('mstore-hserve-deploy-', async (b) => {
    await commitVersion(b.ws, 1);
    boxOk(b.ws, ['deploy', 'box', 'v001']);
    const parent = path.dirname(b.deployRoot);
    const outside = readdirSync(parent).sort();
    const safe = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
    const hostile = ['current', '..', '../x', 'a'.repeat(300), '.tmp-x'];
    hostile.forEach((v, i) => forgeVersion(b.ws, `v00${i + 2}`, v));
    for (let i = 0; i < hostile.length; i++) {
      const tag = `v00${i + 2}`;
      const r = mstore(b.ws, ['deploy', 'box', tag], BOX_ENV);
      const what = `version.json "version": ${JSON.stringify(hostile[i].slice(0, 20))}`;
      const cur = path.join(b.deployRoot, 'current');
      assert.ok(lstatSync(cur).isSymbolicLink(), `${what}: current is still a symlink (${r.stderr})`);
      const target = readlinkSync(cur);
      assert.match(target, safe, `${what}: current -> ${target}`);
      assert.is.not(target, 'current');
      assert.is(r.code, 0, `${what}: deploy ${tag}: ${r.stderr}`);
      assert.is(target, tag, `${what}: the directory is named after the version tag the box holds`);
      assert.equal(readdirSync(parent).sort(), outside, `${what}: nothing written beside the deploy root`);
      for (const n of readdirSync(b.deployRoot)) assert.ok(n === 'current' || safe.test(n), `${what}: ${n} in the deploy root`);
    }
    // Later deploys and rollbacks still work.
    boxOk(b.ws, ['deploy', 'box', 'v001']);
    assert.is(readlinkSync(path.join(b.deployRoot, 'current')), 'v001');
    boxOk(b.ws, ['deploy', 'rollback', 'box']);
    assert.ok(lstatSync(path.join(b.deployRoot, 'current')).isSymbolicLink());
    assert.is.not(readlinkSync(path.join(b.deployRoot, 'current')), 'v001', 'rolled back');
    assertServed({ store: b.store, pushed: ['v001', ...hostile.map((_, i) => `v00${i + 2}`)] }, 'deploy names');
  }));

test.run();
