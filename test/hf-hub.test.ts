/**
 * `mstore serve` as a Hugging Face Hub (issue 18, part 2), checked with the real clients:
 * huggingface_hub's snapshot_download and hf_hub_download, and transformers' from_pretrained,
 * with HF_ENDPOINT at the server (test/python/hf_stack.py). Tiny seeded Qwen3 models are made
 * by transformers here; nothing is downloaded. Then, from node, what the clients do not show:
 * ranges, bad paths, and a damaged chunk, which must never reach a client as a whole file.
 * Needs a Python with torch, transformers and huggingface_hub ($MSTORE_HF_PYTHON, or the venv
 * `bash .ci/run` builds); without one these tests fail, they do not skip.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync, writeSync, closeSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanup, fillPattern, listeningUrl, mstore, sha256File, tmpDir } from './helpers.js';
import { hfStack } from './hf-helpers.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const REPO = 'team/tiny';
const TOKEN = 'hf-read-token-0123456789';

function ok(cwd: string, args: string[]): string {
  const r = mstore(cwd, args);
  assert.is(r.code, 0, `mstore ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

function digests(dir: string): Record<string, string> {
  return Object.fromEntries(readdirSync(dir).map((n) => [n, sha256File(path.join(dir, n))]));
}

/**
 * A TCP proxy in front of the server that cuts the first download of `file` after `after`
 * bytes of its answer, as a network would; every later connection passes through whole.
 */
function cuttingProxy(upstream: URL, file: string, after: number): Promise<{ url: string; cut: () => boolean; close: () => void }> {
  let cutDone = false;
  const server = net.createServer((client) => {
    const up = net.connect(Number(upstream.port), upstream.hostname);
    let armed = false;
    let seen = 0;
    client.on('data', (d) => {
      const text = d.toString('latin1');
      if (!cutDone && text.startsWith('GET ') && text.split('\r\n')[0].includes(file) && !/\r\nrange:/i.test(text)) armed = true;
      up.write(d);
    });
    up.on('data', (d) => {
      if (armed && !cutDone) {
        seen += d.length;
        if (seen > after) {
          cutDone = true;
          client.write(d.subarray(0, d.length - (seen - after)));
          client.destroy();
          up.destroy();
          return;
        }
      }
      client.write(d);
    });
    const end = (): void => {
      client.destroy();
      up.destroy();
    };
    client.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      resolve({ url: `http://127.0.0.1:${port}`, cut: () => cutDone, close: () => server.close() });
    });
  });
}

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; body: Buffer | undefined; error?: string }> {
  try {
    const r = await fetch(url, { headers: { authorization: `Bearer ${TOKEN}`, ...headers } });
    try {
      return { status: r.status, headers: r.headers, body: Buffer.from(await r.arrayBuffer()) };
    } catch (e) {
      return { status: r.status, headers: r.headers, body: undefined, error: (e as Error).message };
    }
  } catch (e) {
    return { status: 0, headers: new Headers(), body: undefined, error: (e as Error).message };
  }
}

test('huggingface_hub and transformers read versions from mstore serve; ranges, bad paths and a damaged chunk', async () => {
  const root = tmpDir('mstore-hf-');
  const stderr: string[] = [];
  let server: ReturnType<typeof spawn> | undefined;
  let proxy: Awaited<ReturnType<typeof cuttingProxy>> | undefined;
  try {
    const made = (await hfStack(['make', path.join(root, 'm1'), '1', path.join(root, 'm2'), '2'], {}, root)) as { tokens: number[][] };
    const [tokens1, tokens2] = made.tokens;
    assert.not.equal(tokens1, tokens2, 'the two seeded models answer differently');

    // Over huggingface_hub's 10 MiB download chunk: a download cut after its first chunk resumes with a Range.
    const extra = Buffer.alloc(12 * 1024 * 1024);
    fillPattern(extra, 7);
    for (const m of ['m1', 'm2']) writeFileSync(path.join(root, m, 'extra.bin'), extra);

    // v001 = m1, v002 = m2 (latest), production -> v002; pushed to a bare store.
    const ws = path.join(root, 'ws');
    mkdirSync(ws);
    cpSync(path.join(root, 'm1'), ws, { recursive: true });
    ok(ws, ['init']);
    ok(ws, ['commit', '-m', 'one']);
    cpSync(path.join(root, 'm2'), ws, { recursive: true });
    ok(ws, ['commit', '-m', 'two']);
    ok(ws, ['tag', 'production', 'v002']);
    ok(root, ['init', '--bare', 'box']);
    ok(ws, ['push', path.join(root, 'box')]);
    const v001 = ok(ws, ['log', '-n', '1', 'v001', '--json']);
    const v001Commit = (JSON.parse(v001) as { commit: string }[])[0].commit;

    const tokens = path.join(root, 'tokens');
    writeFileSync(tokens, `read ${TOKEN}\n`);
    server = spawn(process.execPath, [path.join(ROOT, 'dist', 'bundle', 'cli.js'), 'serve', path.join(root, 'box'), '--listen', '127.0.0.1:0', '--tokens', tokens, '--hf-repo', REPO], { stdio: ['ignore', 'pipe', 'pipe'] });
    server.stderr!.on('data', (d: Buffer) => stderr.push(d.toString()));
    const url = await listeningUrl(server);
    proxy = await cuttingProxy(new URL(url), 'extra.bin', 11 * 1024 * 1024);

    // The real clients, from a directory where REPO is not a local path.
    const away = path.join(root, 'away');
    mkdirSync(away);
    const res = (await hfStack(['client', REPO], { HF_ENDPOINT: url, HF_TOKEN: TOKEN, HF_HOME: path.join(root, 'hf-home'), MSTORE_TEST_CUT_ENDPOINT: proxy.url }, away)) as {
      v001: Record<string, string>;
      production: Record<string, string>;
      cli: Record<string, string>;
      resumed: string;
      errors: Record<string, { raised: string | null; status?: number; commit?: string | null }>;
      tokens: number[];
    };
    assert.equal(res.v001, digests(path.join(root, 'm1')), 'snapshot_download of v001: the files, byte for byte');
    assert.equal(res.production, digests(path.join(root, 'm2')), 'snapshot_download of a tag');
    assert.equal(res.cli, digests(path.join(root, 'm1')), 'hf download of a version');
    assert.ok(proxy.cut(), 'the proxy cut a download half-way');
    assert.is(res.resumed, sha256File(path.join(root, 'm1', 'extra.bin')), 'the cut download resumed to the whole file');
    assert.match(stderr.join(''), /GET \/team\/tiny\/resolve\/v001\/extra\.bin 206 /, `resumed with a Range request: ${stderr.join('').split('\n').filter((l) => l.includes('extra.bin')).join('\n')}`);
    assert.is(res.errors.missing_file.raised, 'RemoteEntryNotFoundError');
    assert.is(res.errors.missing_file.commit, v001Commit, 'a missing file names the revision it was looked for in');
    assert.is(res.errors.missing_revision.raised, 'RevisionNotFoundError');
    assert.is(res.errors.missing_repo.raised, 'RepositoryNotFoundError');
    assert.is(res.errors.wrong_token.status, 401);
    assert.is(res.errors.no_token.status, 401);
    assert.equal(res.tokens, tokens2, 'from_pretrained(revision="production") generates as the original v002 does');

    // No revision: the Hub's default branch, main, is the default line's head (v002 here).
    const v002Commit = (JSON.parse(ok(ws, ['log', '-n', '1', 'v002', '--json'])) as { commit: string }[])[0].commit;
    const info = await get(`${url}/api/models/team/tiny`);
    assert.is(info.status, 200);
    assert.is((JSON.parse(info.body!.toString()) as { sha: string }).sha, v002Commit);

    // Ranges, from node.
    const model = readFileSync(path.join(root, 'm1', 'model.safetensors'));
    const file = `${url}/team/tiny/resolve/v001/model.safetensors`;
    const part = await get(file, { range: 'bytes=1000-1999' });
    assert.is(part.status, 206);
    assert.is(part.headers.get('content-range'), `bytes 1000-1999/${model.length}`);
    assert.ok(part.body?.equals(model.subarray(1000, 2000)), 'exactly the bytes asked for');
    const tail = await get(file, { range: 'bytes=-100' });
    assert.ok(tail.status === 206 && tail.body?.equals(model.subarray(model.length - 100)), 'a suffix range');
    const beyond = await get(file, { range: `bytes=${model.length}-` });
    assert.is(beyond.status, 416);
    assert.is(beyond.headers.get('content-range'), `bytes */${model.length}`);
    const head = await fetch(file, { method: 'HEAD', headers: { authorization: `Bearer ${TOKEN}` } });
    assert.is(head.headers.get('etag'), `"${sha256File(path.join(root, 'm1', 'model.safetensors'))}"`, 'a large file\'s ETag is its sha256');
    assert.is(head.headers.get('x-repo-commit'), v001Commit);

    // Bad paths: one clear error each, no stack, the server still up.
    const traversal = await get(`${url}/team/tiny/resolve/v001/..%2F..%2Fetc%2Fpasswd`);
    assert.is(traversal.status, 404);
    assert.is(traversal.headers.get('x-error-code'), 'EntryNotFound');
    const badEscape = await get(`${url}/team/tiny/resolve/v001/%ZZ`);
    assert.is(badEscape.status, 400);
    const post = await fetch(file, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    assert.is(post.status, 405);
    const otherRev = await get(`${url}/api/models/team/tiny/revision/${encodeURIComponent('v001~1')}`);
    assert.is(otherRev.status, 404, 'v001 has no parent');
    assert.is(otherRev.headers.get('x-error-code'), 'RevisionNotFound');

    // A damaged chunk: never a complete 200 body of the wrong bytes.
    const packs = path.join(root, 'box', 'packs');
    const packFiles = readdirSync(packs, { recursive: true }).map(String).filter((f) => f.endsWith('.pack'));
    const big = packFiles.map((f) => path.join(packs, f)).sort((a, b) => statSync(b).size - statSync(a).size)[0];
    const fd = openSync(big, 'r+');
    writeSync(fd, Buffer.from([0x5a, 0xa5, 0x5a, 0xa5]), 0, 4, 4096);
    closeSync(fd);
    // Each file is either served whole and right, or refused or cut; the damaged one never whole.
    let refused = 0;
    for (const [name, original] of [['model.safetensors', model], ['extra.bin', extra]] as const) {
      const r = await get(`${url}/team/tiny/resolve/v001/${name}`);
      if (r.status === 200 && r.body?.length === original.length) assert.ok(r.body.equals(original), `${name} reached the client whole with damaged bytes`);
      else {
        assert.ok(r.status === 422 || r.error !== undefined || r.status === 0 || (r.body?.length ?? 0) < original.length, `${name}: refused or cut (status ${r.status} ${r.error ?? ''})`);
        refused++;
      }
    }
    assert.ok(refused > 0, 'the damaged chunk was noticed');
    const health = await fetch(`${url}/health`);
    assert.is(health.status, 200, 'the server is still up');
  } finally {
    proxy?.close();
    server?.kill('SIGTERM');
    cleanup(root);
  }
});

test.run();
