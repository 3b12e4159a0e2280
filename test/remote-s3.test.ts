/**
 * The S3 transport against a real Ceph RGW (scripts/rgw-start.sh; CI starts it and sets
 * MSTORE_TEST_S3=1, AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
 * MSTORE_S3_BUCKET). Without those variables the tests read the env file the start script
 * writes; they skip, saying so, only when no RGW is running and MSTORE_TEST_S3 is unset.
 *
 * Through S3Remote (the Remote interface) with small inputs:
 *   - the Remote contract (remote-acceptance.ts), each test under a fresh prefix;
 *   - the key layout: packs in the local pack format, .idx = the pack's tail, loose git objects;
 *     a second instance learns what the first wrote from index/ and git/;
 *   - compare-and-swap of refs.json: 8 writers racing for one ref, 20 rounds, exactly one wins;
 *   - an interrupted send leaves only complete, indexed packs; the rerun sends the rest;
 *   - hostile buckets: a flipped pack byte, a replaced git object, a forged .idx, bad ref
 *     names in refs.json, a foreign prefix, wrong credentials, an unreachable endpoint.
 * Through the real CLI (issue 5, acceptance 1-4 for S3):
 *   - v001-v003 with a 512 MiB safetensors file (half MSTORE_TEST_LARGE_GIB; remote-path moves the whole) pushed,
 *     cloned, every version byte for byte; v004 sends the changed bytes + 1 %;
 *   - kill -9 of push at 10 seeded random moments (MSTORE_TEST_SEED replays a run): refs.json
 *     names only complete versions, and the rerun sends only what was missing;
 *   - two clients pushing different versions to one ref at once, 20 rounds;
 *   - a tampered pack or git object: pull and clone fail with one line naming it, the local
 *     store unchanged.
 * Every test works under its own prefix and deletes it at the end (RGW keeps objects in RAM).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { deflateSync, inflateSync } from 'node:zlib';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import type { S3Client } from '@aws-sdk/client-s3';
import { CLI, cleanup, git, mstore, prng, tmpDir, treeDigest, writeModelDir } from './helpers.js';
import { openS3Remote as openRemote, S3_PACK_BYTES, type S3Options, type S3Remote } from '../src/remote/transport/s3.js';
import { parsePackTail, ENTRY_CHUNK, ENTRY_FILE, PACK_MAGIC } from '../src/repo/pack.js';
import type { WireObject } from '../src/remote/remote.js';
import { caseA, resetSeeds, storeCase } from './merge-cases.js';
import { contractSuite, drain, WIRE_GIB, iter, killWorkspace, loose, racePushes, roundTrip, sha1, sha256, smallVersion } from './remote-acceptance.js';

// ---------------------------------------------------------------- environment

const ENV_FILE = path.join(process.env.CEPH_DIR ?? path.join(process.env.TMPDIR ?? '/tmp', 'mstore-rgw'), 'env');
if (!process.env.AWS_ENDPOINT_URL && existsSync(ENV_FILE)) {
  for (const line of readFileSync(ENV_FILE, 'utf8').split('\n')) {
    const m = /^export ([A-Z0-9_]+)=(.*)$/.exec(line);
    if (m) process.env[m[1]] ??= m[2];
  }
}
const ENDPOINT = process.env.AWS_ENDPOINT_URL;
const BUCKET = process.env.MSTORE_S3_BUCKET ?? 'mstore-test';
const REQUIRED = process.env.MSTORE_TEST_S3 === '1';
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

async function reachable(): Promise<string | undefined> {
  if (!ENDPOINT) return 'AWS_ENDPOINT_URL is not set and no env file at ' + ENV_FILE;
  try {
    await fetch(ENDPOINT, { signal: AbortSignal.timeout(3000) });
    return undefined;
  } catch (e) {
    return `${ENDPOINT} does not answer (${(e as Error).message})`;
  }
}
const down = await reachable();

const MIB = 2 ** 20;

// ---------------------------------------------------------------- helpers

/** Every remote a test opens is closed at the end (their keep-alive sockets with them). */
const opened: S3Remote[] = [];
function openS3Remote(url: string, opts: S3Options = {}): S3Remote {
  const r = openRemote(url, opts);
  opened.push(r);
  return r;
}

let client: S3Client | undefined;
type Sdk = typeof import('@aws-sdk/client-s3');
let sdk: Sdk;

async function s3(): Promise<S3Client> {
  if (!client) {
    sdk = await import('@aws-sdk/client-s3');
    client = new sdk.S3Client({
      endpoint: ENDPOINT,
      region: process.env.AWS_REGION ?? 'us-east-1',
      forcePathStyle: true,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }
  return client;
}

/** The test's own S3 calls, failing with the key and status (the SDK's RGW errors say only "UnknownError"). */
async function call<T>(what: string, f: (c: S3Client) => Promise<T>): Promise<T> {
  const c = await s3();
  try {
    return await f(c);
  } catch (e) {
    const x = e as { name?: string; $metadata?: { httpStatusCode?: number } };
    throw new Error(`test S3 call ${what}: HTTP ${x.$metadata?.httpStatusCode} ${x.name}`);
  }
}

async function getObject(key: string): Promise<Buffer> {
  const r = await call(`GET ${key}`, (c) => c.send(new sdk.GetObjectCommand({ Bucket: BUCKET, Key: key })));
  return Buffer.from(await (r.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray());
}

async function putObject(key: string, body: Buffer): Promise<void> {
  await call(`PUT ${key}`, (c) => c.send(new sdk.PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body, ContentLength: body.length })));
}

async function listKeys(prefix: string): Promise<string[]> {
  const out: string[] = [];
  let token: string | undefined;
  do {
    const r = await call(`LIST ${prefix}/`, (c) => c.send(new sdk.ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${prefix}/`, ContinuationToken: token })));
    for (const o of r.Contents ?? []) if (o.Key) out.push(o.Key.slice(prefix.length + 1));
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  return out.sort();
}

async function deletePrefix(prefix: string): Promise<void> {
  for (;;) {
    const keys = await listKeys(prefix);
    if (!keys.length) return;
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000).map((k) => ({ Key: `${prefix}/${k}` }));
      await call(`DELETE ${prefix}/ (${batch.length} keys)`, (c) => c.send(new sdk.DeleteObjectsCommand({ Bucket: BUCKET, Delete: { Objects: batch } })));
    }
  }
}

/** A fresh prefix per test (and per round where a test needs an empty remote). */
const newPrefix = (name: string): string => `t-${name}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
const urlOf = (prefix: string): string => `s3://${BUCKET}/${prefix}`;

/**
 * An independent reader of the layout (docs/protocol.md §3), the oracle of the kill test: every
 * .idx is a valid pack tail whose pack exists with exactly the size it implies, and every
 * manifest an .idx lists names only chunks some .idx lists. Returns the indexed payload bytes.
 */
async function checkLayout(prefix: string): Promise<{ indexedBytes: number; packs: number; orphans: number }> {
  const keys = await listKeys(prefix);
  const chunks = new Set<string>();
  const manifests: { pack: string; offset: number; length: number }[] = [];
  let indexedBytes = 0;
  const packs = keys.filter((k) => /^data\/[0-9a-f]{2}\/[0-9a-f]{64}\.pack$/.test(k));
  const indexed = new Set<string>();
  for (const k of keys) {
    const m = /^index\/([0-9a-f]{64})\.idx$/.exec(k);
    if (!m) continue;
    const id = m[1];
    const idx = await getObject(`${prefix}/${k}`);
    const count = idx.readUInt32LE(idx.length - 12);
    let sum = 0;
    for (let i = 0; i < count; i++) sum += idx.readUInt32LE(i * 37 + 1);
    const size = PACK_MAGIC.length + sum + idx.length;
    const entries = parsePackTail(id, size, idx);
    const packKey = `${prefix}/data/${id.slice(0, 2)}/${id}.pack`;
    const head = await call(`HEAD ${packKey}`, (c) => c.send(new sdk.HeadObjectCommand({ Bucket: BUCKET, Key: packKey })));
    assert.is(head.ContentLength, size, `${k}: its pack has ${head.ContentLength} bytes, the table says ${size}`);
    indexed.add(`data/${id.slice(0, 2)}/${id}.pack`);
    for (const e of entries) {
      indexedBytes += e.length;
      if (e.type === ENTRY_CHUNK) chunks.add(e.id.toString('hex'));
      else manifests.push({ pack: id, offset: e.offset, length: e.length });
    }
  }
  for (const m of manifests) {
    const key = `${prefix}/data/${m.pack.slice(0, 2)}/${m.pack}.pack`;
    const r = await call(`GET ${key}`, (c) => c.send(new sdk.GetObjectCommand({ Bucket: BUCKET, Key: key, Range: `bytes=${m.offset}-${m.offset + m.length - 1}` })));
    const b = Buffer.from(await (r.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray());
    for (let o = 0; o < b.length; o += 36) assert.ok(chunks.has(b.subarray(o, o + 32).toString('hex')), `a manifest in pack ${m.pack} names chunk ${b.subarray(o, o + 32).toString('hex')}, which no .idx lists`);
  }
  return { indexedBytes, packs: packs.length, orphans: packs.filter((p) => !indexed.has(p)).length };
}

async function rejects(p: Promise<unknown>, re: RegExp, what: string): Promise<Error> {
  try {
    await p;
  } catch (e) {
    assert.match((e as Error).message, re, `${what}: ${(e as Error).message}`);
    return e as Error;
  }
  assert.unreachable(`${what}: no error`);
  throw new Error('unreachable');
}

function ok(cwd: string, args: string[], env: Record<string, string> = {}): string {
  const r = mstore(cwd, args, env);
  assert.is(r.code, 0, `mstore ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}
const okJson = <T>(cwd: string, args: string[]): T => JSON.parse(ok(cwd, [...args, '--json'])) as T;

interface PushJson {
  bytesSent: number;
  upToDate: boolean;
  refs: { ref: string; old: string | null; new: string | null }[];
}

function refsOf(gitdir: string): string {
  return git(gitdir, ['for-each-ref', '--format=%(refname) %(objectname)']).stdout;
}

// ---------------------------------------------------------------- tests

if (down && !REQUIRED) {
  console.log(`\n  remote-s3: SKIPPED, no RGW: ${down}.\n  Start one with scripts/rgw-start.sh (apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd).\n`);
  test.skip('S3 transport against Ceph RGW (RGW not running)', () => undefined);
  test.run();
} else {
  if (down) {
    test('RGW is up (MSTORE_TEST_S3=1 requires it)', () => {
      assert.unreachable(`MSTORE_TEST_S3=1 but ${down}; scripts/rgw-start.sh starts it`);
    });
  } else registerTests();
  test.after(async () => {
    await Promise.all(opened.map((r) => r.close()));
    client?.destroy();
  });
  test.run();
}

function registerTests(): void {
  contractSuite('s3 (RGW)', async () => {
    const prefix = newPrefix('contract');
    const remote = openS3Remote(urlOf(prefix), {});
    return {
      remote,
      dispose: async () => {
        await remote.close();
        await deletePrefix(prefix);
      },
    };
  });

  test('layout: packs in the local format, .idx = the pack tail, loose git objects, refs.json; a second instance learns them', async () => {
    const prefix = newPrefix('layout');
    const cache = tmpDir('mstore-s3cache-');
    const r = openS3Remote(urlOf(prefix), { cacheDir: cache });
    try {
      const v = smallVersion(1);
      const sent = await r.send(iter([...v.objects, v.objects[0]]));
      assert.is(sent.objects, v.objects.length, 'a repeated object is stored once');
      const keys = await listKeys(prefix);
      const pack = keys.find((k) => k.startsWith('data/')) as string;
      const id = /([0-9a-f]{64})\.pack$/.exec(pack)?.[1] as string;
      assert.equal(keys.filter((k) => !k.startsWith('git/')), ['mstore-remote.json', pack, `index/${id}.idx`].sort());
      assert.is(pack, `data/${id.slice(0, 2)}/${id}.pack`);
      assert.equal(JSON.parse((await getObject(`${prefix}/mstore-remote.json`)).toString()), { format: 'mstore-s3/1' });
      const packBytes = await getObject(`${prefix}/${pack}`);
      const idx = await getObject(`${prefix}/index/${id}.idx`);
      assert.ok(packBytes.subarray(0, 8).equals(PACK_MAGIC));
      assert.ok(packBytes.subarray(packBytes.length - idx.length).equals(idx), 'the .idx is the pack tail');
      const entries = parsePackTail(id, packBytes.length, idx);
      assert.equal(entries.map((e) => e.type), [ENTRY_CHUNK, ENTRY_CHUNK, ENTRY_CHUNK, ENTRY_CHUNK, ENTRY_CHUNK, ENTRY_FILE]);
      for (const e of entries.filter((x) => x.type === ENTRY_CHUNK)) assert.is(sha256(packBytes.subarray(e.offset, e.offset + e.length)), e.id.toString('hex'));
      for (const o of v.objects.filter((x) => x.kind === 'git')) {
        assert.ok(inflateSync(await getObject(`${prefix}/git/${o.id}`)).equals(o.data), `git/${o.id} is the zlib-deflated loose object`);
      }
      assert.ok(existsSync(path.join(cache, 's3-index', `${id}.idx`)), 'the .idx is cached');

      // A second instance learns everything from index/ and git/.
      const r2 = openS3Remote(urlOf(prefix), {});
      try {
        assert.equal(await r2.missing('chunk', [...v.chunkIds, 'a'.repeat(64)]), ['a'.repeat(64)]);
        assert.equal(await r2.missing('file', [v.fileId]), []);
        assert.equal(await r2.missing('git', [v.commit, 'b'.repeat(40)]), ['b'.repeat(40)]);
        const many = [...Array.from({ length: 100 }, (_, i) => sha1(Buffer.from(String(i)))), v.commit];
        assert.equal((await r2.missing('git', many)).length, 100, 'the listing path agrees');
        const got = await drain(r2.fetch('chunk', v.chunkIds));
        assert.equal(got.map((o) => o.id).sort(), [...v.chunkIds].sort(), 'read from the packs the .idx objects name');
        for (const o of got) assert.is(sha256(o.data), o.id);

        // refs.json: the whole table in one object, written by either instance, read by both.
        await r2.updateRefs([{ ref: 'refs/heads/latest', old: null, new: v.commit }, { ref: 'refs/tags/v001', old: null, new: v.commit }]);
        assert.equal([...(await r.listRefs())], [['refs/heads/latest', v.commit], ['refs/tags/v001', v.commit]]);
        const doc = JSON.parse((await getObject(`${prefix}/refs.json`)).toString()) as { refs: Record<string, string> };
        assert.equal(doc.refs, { 'refs/heads/latest': v.commit, 'refs/tags/v001': v.commit });
        await r.updateRefs([{ ref: 'refs/tags/v001', old: v.commit, new: null }]);
        assert.equal([...(await r2.listRefs())], [['refs/heads/latest', v.commit]]);
      } finally {
        await r2.close();
      }
    } finally {
      await r.close();
      await deletePrefix(prefix);
      cleanup(cache);
    }
  });

  test('compare-and-swap: 8 writers create one remote at once, then race for one ref, 20 rounds, exactly one wins each round', async () => {
    const prefix = newPrefix('cas');
    const writers = Array.from({ length: 8 }, () => openS3Remote(urlOf(prefix), {}));
    try {
      // Nine versions: each round the eight writers propose the eight that are not the current value
      // (an update to the value a ref already has is a no-op that may legitimately succeed too).
      const versions = Array.from({ length: 9 }, (_, i) => smallVersion(100 + i, 1, 100));
      // Eight first pushes into the new prefix at once: they agree on the marker.
      await Promise.all(writers.map((w, i) => w.send(iter(versions[i].objects))));
      await writers[0].send(iter(versions[8].objects));
      let cur: string | null = null;
      const codes = new Map<string, number>();
      for (let round = 0; round < 20; round++) {
        const old: string | null = cur;
        const others: string[] = versions.map((v) => v.commit).filter((c) => c !== old);
        const proposals: string[] = writers.map((_, i) => others[(round + i) % others.length]);
        const results: PromiseSettledResult<void>[] = await Promise.allSettled(writers.map((w, i) => w.updateRefs([{ ref: 'refs/heads/latest', old, new: proposals[i] }])));
        const won: number[] = results.map((x, i) => (x.status === 'fulfilled' ? i : -1)).filter((i) => i >= 0);
        assert.is(won.length, 1, `round ${round}: ${won.length} writers won`);
        for (const x of results) {
          if (x.status === 'rejected') {
            const e = x.reason as Error & { code?: string };
            codes.set(e.code ?? 'none', (codes.get(e.code ?? 'none') ?? 0) + 1);
            assert.match(e.message, /rejected refs\/heads\/latest \(non-fast-forward\)/, `round ${round}`);
          }
        }
        cur = proposals[won[0]];
        assert.is((await writers[3].listRefs()).get('refs/heads/latest'), cur, `round ${round}: refs.json has the winner's value`);
      }
      assert.equal([...codes.keys()], ['EREJECTED']);
    } finally {
      await Promise.all(writers.map((w) => w.close()));
      await deletePrefix(prefix);
    }
  });

  test('an interrupted send leaves complete, indexed packs only; the rerun sends the rest', async () => {
    const prefix = newPrefix('interrupt');
    try {
      // 40 chunks of 4 MiB: three packs of 64 MiB and a partial one.
      const chunks = Array.from({ length: 40 }, (_, i) => {
        const b = Buffer.alloc(4 * MIB);
        for (let o = 0; o < b.length; o += 32) createHash('sha256').update(`${i}/${o}`).digest().copy(b, o);
        return b;
      });
      const objs: WireObject[] = chunks.map((c) => ({ kind: 'chunk', id: sha256(c), data: c }));
      const r = openS3Remote(urlOf(prefix), {});
      await rejects(r.send(iter(objs, 20)), /source failed/, 'a failing source');
      await r.close();
      const after = await checkLayout(prefix);
      assert.is(after.orphans, 0);
      // The 16 chunks of the first full pack are indexed; the 4 after it were flushed as a pack too.
      assert.is(after.indexedBytes, 20 * 4 * MIB);
      const r2 = openS3Remote(urlOf(prefix), {});
      try {
        const lacking = await r2.missing('chunk', objs.map((o) => o.id));
        assert.is(lacking.length, 20);
        const s = await r2.send(iter(objs.filter((o) => lacking.includes(o.id))));
        assert.is(s.bytes, 20 * 4 * MIB);
        assert.equal(await r2.missing('chunk', objs.map((o) => o.id)), []);
        // A rerun that rebuilds a pack that is already there (uploaded, never indexed) skips its upload.
        const keys = await listKeys(prefix);
        const idx = keys.filter((k) => k.startsWith('index/'));
        await call(`DELETE ${idx[0]}`, (c) => c.send(new sdk.DeleteObjectCommand({ Bucket: BUCKET, Key: `${prefix}/${idx[0]}` })));
        const r3 = openS3Remote(urlOf(prefix), {});
        const again = await r3.missing('chunk', objs.map((o) => o.id));
        assert.ok(again.length > 0);
        const s3r = await r3.send(iter(objs.filter((o) => again.includes(o.id))));
        assert.is(s3r.bytes, 0, 'the orphan pack was found whole and only its .idx written');
        assert.equal(await r3.missing('chunk', objs.map((o) => o.id)), []);
        await r3.close();
      } finally {
        await r2.close();
      }
      assert.ok(S3_PACK_BYTES >= 16 * 4 * MIB);
    } finally {
      await deletePrefix(prefix);
    }
  });

  test('hostile bucket: flipped pack byte, replaced git object, forged .idx, bad ref names, foreign prefix, bad credentials, no endpoint', async () => {
    const prefix = newPrefix('hostile');
    const r = openS3Remote(urlOf(prefix), {});
    try {
      const v = smallVersion(7);
      await r.send(iter(v.objects));
      await r.updateRefs([{ ref: 'refs/heads/latest', old: null, new: v.commit }]);
      const keys = await listKeys(prefix);
      const pack = keys.find((k) => k.startsWith('data/')) as string;
      const idxKey = keys.find((k) => k.startsWith('index/')) as string;
      const original = await getObject(`${prefix}/${pack}`);

      // A flipped byte inside the second chunk.
      const bad = Buffer.from(original);
      bad[8 + 100_000 + 17] ^= 0x01;
      await putObject(`${prefix}/${pack}`, bad);
      const e1 = await rejects(drain(openS3Remote(urlOf(prefix), {}).fetch('chunk', v.chunkIds)), /do not hash to its id/, 'a flipped pack byte');
      assert.ok(e1.message.includes(`${urlOf(prefix)}/${pack}: chunk ${v.chunkIds[1]}`), e1.message);
      assert.not.match(e1.message, /\n/);
      await putObject(`${prefix}/${pack}`, original);

      // A git object replaced by another (valid) object.
      const other = loose('blob', Buffer.from('not the commit\n'));
      await putObject(`${prefix}/git/${v.commit}`, deflateSync(other.data));
      const e2 = await rejects(drain(openS3Remote(urlOf(prefix), {}).fetch('git', [v.commit])), /do not hash to its id/, 'a replaced git object');
      assert.ok(e2.message.includes(`${urlOf(prefix)}/git/${v.commit}`), e2.message);
      await putObject(`${prefix}/git/${v.commit}`, Buffer.from('not zlib'));
      await rejects(drain(openS3Remote(urlOf(prefix), {}).fetch('git', [v.commit])), /git\/[0-9a-f]{40}: not a zlib-deflated git object/, 'garbage git object');

      // An .idx whose table does not hash to its name.
      const idx = await getObject(`${prefix}/${idxKey}`);
      const forged = Buffer.from(idx);
      forged[1] ^= 0x01;
      await putObject(`${prefix}/${idxKey}`, forged);
      await rejects(openS3Remote(urlOf(prefix), {}).missing('chunk', v.chunkIds), /index\/[0-9a-f]{64}\.idx: .*(hash|length)/, 'a forged .idx');
      await putObject(`${prefix}/${idxKey}`, idx);

      // Bad ref names or values in refs.json.
      const good = await getObject(`${prefix}/refs.json`);
      for (const [name, value] of [
        ['refs/heads/../../x', v.commit],
        ['/etc/passwd', v.commit],
        ['refs/heads/a\u0000b', v.commit],
        ['HEAD', v.commit],
        ['refs/tags/v1', '../../etc'],
      ]) {
        await putObject(`${prefix}/refs.json`, Buffer.from(JSON.stringify({ refs: { [name]: value } })));
        const e = await rejects(openS3Remote(urlOf(prefix), {}).listRefs(), /refs\.json: (invalid ref name|.*is not a 40-hex object id)/, `ref ${JSON.stringify(name)}`);
        assert.not.match(e.message, /[\n\0]/);
      }
      await putObject(`${prefix}/refs.json`, Buffer.from('{"refs": [1]}'));
      await rejects(openS3Remote(urlOf(prefix), {}).listRefs(), /refs\.json: no "refs" object/, 'refs not an object');
      await putObject(`${prefix}/refs.json`, good);
      assert.is((await openS3Remote(urlOf(prefix), {}).listRefs()).get('refs/heads/latest'), v.commit);

      // A prefix holding something else, or another format.
      const foreign = newPrefix('foreign');
      await putObject(`${foreign}/photo.jpg`, Buffer.from('jpeg'));
      await rejects(openS3Remote(urlOf(foreign), {}).send(iter(v.objects)), /holds other objects .*not an mstore remote/, 'a foreign prefix');
      await rejects(openS3Remote(urlOf(foreign), {}).listRefs(), /not an mstore remote/, 'reading a foreign prefix');
      await putObject(`${foreign}/mstore-remote.json`, Buffer.from('{"format":"restic"}'));
      await rejects(openS3Remote(urlOf(foreign), {}).listRefs(), /not an mstore-s3\/1 marker/, 'another format');
      await deletePrefix(foreign);

      // Credentials and endpoints: one line, EAUTH / EREMOTE, never the secret.
      const secret = 'sEcReT-do-not-print';
      const wrong = openS3Remote(urlOf(prefix), { accessKeyId: process.env.AWS_ACCESS_KEY_ID, secretAccessKey: secret });
      const e3 = await rejects(wrong.listRefs(), /access denied \(HTTP 403/, 'a wrong secret');
      assert.is((e3 as Error & { code?: string }).code, 'EAUTH');
      assert.not.ok(e3.message.includes(secret));
      await wrong.close();
      const nobody = openS3Remote(`s3://no-such-bucket-${randomBytes(3).toString('hex')}/x`, {});
      await rejects(nobody.listRefs(), /bucket 'no-such-bucket-[0-9a-f]+' does not exist/, 'no bucket');
      await nobody.close();
      const nowhere = openS3Remote(urlOf(prefix), { endpoint: 'http://127.0.0.1:9' });
      const e4 = await rejects(nowhere.listRefs(), /cannot reach http:\/\/127\.0\.0\.1:9 \(ECONNREFUSED/, 'no endpoint');
      assert.is((e4 as Error & { code?: string }).code, 'EREMOTE');
      await nowhere.close();
      for (const u of ['s3://', 's3://b', 's3://bucket/../x', 's3://bucket/a//b', 'http://x/y']) {
        assert.throws(() => openS3Remote(u, {}), /not an s3:\/\/BUCKET\/PREFIX URL|not a valid bucket name|prefix may not hold/, u);
      }
    } finally {
      await r.close();
      await deletePrefix(prefix);
    }
  });

  // ---------------------------------------------------------------- through the CLI

  test(`${WIRE_GIB} GiB x 3 versions pushed to S3, cloned, checked out byte for byte; v004 sends the changed bytes + 1 %`, async () => {
    const prefix = newPrefix('large');
    const url = urlOf(prefix);
    const root = tmpDir('mstore-s3large-');
    try {
      const ws = path.join(root, 'ws');
      mkdirSync(ws);
      ok(ws, ['init']);
      ok(ws, ['remote', 'add', 'origin', url]);
      await roundTrip(root, ws, {
        label: 's3 (RGW)',
        gib: WIRE_GIB,
        remote: 'origin',
        cloneUrl: url,
        check: async (why: string) => assert.is((await checkLayout(prefix)).orphans, 0, `${why}: packs without .idx`),
      });
    } finally {
      cleanup(root);
      await deletePrefix(prefix);
    }
  });

  test('a merged version kept as recipes travels as them: push sends no chunk to a remote with its base and adapter, a clone rebuilds it bit for bit (the puller proves what S3 cannot)', async () => {
    const prefix = newPrefix('recipes');
    const url = urlOf(prefix);
    const root = tmpDir('mstore-s3recipes-');
    try {
      resetSeeds();
      const c = caseA(path.join(root, 'cases'));
      const ws = storeCase(path.join(root, 'ws'), c.base, c.adapter);
      ok(ws, ['consolidate', '--base', 'v001:base', '--adapter', 'adapters/v001:adapter', '--worker', 'builtin']);
      ok(ws, ['push', url, 'v001', 'adapters/v001']);
      const p = okJson<PushJson & { recipesSent: number; chunksSent: number }>(ws, ['push', url, 'merged/v001']);
      assert.is(p.chunksSent, 0);
      assert.is(p.recipesSent, 2);
      const cl = path.join(root, 'clone');
      ok(root, ['clone', url, cl]);
      assert.is(okJson<{ index: { recipes: number } }>(cl, ['fsck']).index.recipes, 2);
      ok(ws, ['checkout', 'merged/v001', '--to', path.join(root, 'a')]);
      ok(cl, ['checkout', 'merged/v001', '--to', path.join(root, 'b')]);
      assert.equal(treeDigest(path.join(root, 'b')), treeDigest(path.join(root, 'a')));
    } finally {
      cleanup(root);
      await deletePrefix(prefix);
    }
  });

  test('kill -9 of push at 10 random moments: refs.json names complete versions; the rerun sends only what was missing', async () => {
    const seed = Number(process.env.MSTORE_TEST_SEED ?? Date.now() % 100000);
    console.log(`  remote-s3 kill test seed ${seed} (MSTORE_TEST_SEED=${seed} replays it)`);
    const rnd = prng(seed);
    const root = tmpDir('mstore-s3kill-');
    const prefixes: string[] = [];
    const fresh = (): string => {
      const p = newPrefix('kill');
      prefixes.push(p);
      return p;
    };
    try {
      const ws = killWorkspace(root);
      const t0 = Date.now();
      const full = okJson<PushJson>(ws, ['push', urlOf(fresh())]);
      const pushMs = Date.now() - t0;
      let prefix = fresh();
      let killed = 0;
      for (let round = 0; round < 10; round++) {
        const at = Math.floor(rnd() * pushMs);
        const child = spawn(process.execPath, [CLI, 'push', urlOf(prefix)], { cwd: ws, stdio: 'ignore' });
        const gone = new Promise((r) => child.once('exit', r));
        await new Promise((r) => setTimeout(r, at));
        if (child.exitCode === null) {
          child.kill('SIGKILL');
          killed++;
        }
        await gone;
        const why = `seed ${seed}, round ${round} (kill at ${at} of ${pushMs} ms)`;
        const layout = await checkLayout(prefix);
        assert.ok(layout.orphans <= 1, `${why}: ${layout.orphans} packs without .idx (at most the one being uploaded)`);
        const refs = await openS3Remote(urlOf(prefix), {}).listRefs();
        if (refs.size) {
          // Whatever refs.json names is complete: a clone fetches and verifies every byte of it.
          const out = path.join(root, `clone${round}`);
          const c = mstore(root, ['clone', urlOf(prefix), out, '--no-checkout']);
          assert.is(c.code, 0, `${why}: refs.json names an incomplete version: ${c.stderr}`);
          assert.is(mstore(out, ['verify', '--all']).code, 0, why);
          cleanup(out);
          await deletePrefix(prefix); // RGW's memstore holds every object in RAM
          prefix = fresh();
        }
      }
      assert.ok(killed >= 5, `seed ${seed}: only ${killed} of 10 kills landed mid-push`);

      await deletePrefix(prefix);
      // Kill once more, as soon as the first pack is indexed (mid-push for sure), then the rerun:
      // it sends what no .idx lists yet, plus at most the pack that was being uploaded when the
      // kill came (S3_PACK_BYTES + one chunk). A pack uploaded whole but not yet indexed is
      // rebuilt identically and found there (not sent again).
      prefix = fresh();
      const child = spawn(process.execPath, [CLI, 'push', urlOf(prefix)], { cwd: ws, stdio: 'ignore' });
      const gone = new Promise((r) => child.once('exit', r));
      while (child.exitCode === null && !(await listKeys(prefix)).some((k) => k.startsWith('index/'))) await new Promise((r) => setTimeout(r, 50));
      assert.is(child.exitCode, null, `seed ${seed}: the push ended before its first pack was indexed`);
      child.kill('SIGKILL');
      await gone;
      const before = (await checkLayout(prefix)).indexedBytes;
      const rerun = okJson<PushJson>(ws, ['push', urlOf(prefix)]);
      const bound = full.bytesSent - before + S3_PACK_BYTES + 8 * MIB;
      assert.ok(rerun.bytesSent <= bound, `seed ${seed}: rerun sent ${rerun.bytesSent}; the remote had ${before} of ${full.bytesSent} indexed (bound ${bound})`);
      assert.ok(before > 0, 'the killed push had indexed a pack');
      console.log(`  killed after the first .idx: ${(before / MIB).toFixed(0)} MiB indexed of ${(full.bytesSent / MIB).toFixed(0)}; the rerun sent ${(rerun.bytesSent / MIB).toFixed(0)} MiB`);
      assert.is((await checkLayout(prefix)).orphans, 0);
      ok(root, ['clone', urlOf(prefix), 'out']);
      assert.equal(treeDigest(path.join(root, 'out')), treeDigest(ws));
    } finally {
      cleanup(root);
      for (const p of prefixes) await deletePrefix(p);
    }
  });

  test('two clients push different versions to the same ref at once, 20 rounds: one wins, the other is rejected, nothing lost', async () => {
    const prefix = newPrefix('race');
    const url = urlOf(prefix);
    const root = tmpDir('mstore-s3race-');
    try {
      const a = path.join(root, 'a');
      mkdirSync(a);
      ok(a, ['init']);
      writeModelDir(a, { step: 1 });
      ok(a, ['commit', '-m', 'base']);
      ok(a, ['remote', 'add', 'origin', url]);
      ok(a, ['push', 'origin']);
      ok(root, ['clone', url, 'b']);
      const b = path.join(root, 'b');
      const latest = await racePushes(a, b, 20, async () => (await openS3Remote(url, {}).listRefs()).get('refs/heads/latest') ?? '');
      ok(root, ['clone', url, 'c', '--no-checkout']);
      const cgit = path.join(root, 'c', '.mstore', 'git');
      assert.is(git(cgit, ['rev-parse', 'latest']).stdout.trim(), latest);
      assert.is(git(cgit, ['rev-list', '--count', 'latest']).stdout.trim(), '21', 'every round added one version on top of the last');
      assert.is(git(cgit, ['fsck', '--strict']).code, 0);
      assert.is(mstore(path.join(root, 'c'), ['verify', '--all']).code, 0);
      assert.is((await checkLayout(prefix)).orphans, 0);
    } finally {
      cleanup(root);
      await deletePrefix(prefix);
    }
  });

  test('a tampered pack byte or git object in the bucket: pull and clone fail with one line naming it, the local store unchanged', async () => {
    const prefix = newPrefix('tamper');
    const url = urlOf(prefix);
    const root = tmpDir('mstore-s3tamper-');
    try {
      const ws = path.join(root, 'ws');
      mkdirSync(ws);
      ok(ws, ['init']);
      writeModelDir(ws, { step: 1 });
      ok(ws, ['commit', '-m', 'one']);
      ok(ws, ['remote', 'add', 'origin', url]);
      ok(ws, ['push', 'origin']);
      ok(root, ['clone', url, 'c']);
      const c = path.join(root, 'c');
      const cgit = path.join(c, '.mstore', 'git');
      const packsBefore = new Set((await listKeys(prefix)).filter((k) => k.startsWith('data/')));
      writeModelDir(ws, { step: 2, tensors: [{ name: 'w', dtype: 'BF16', shape: [512, 512], seed: 77 }] });
      ok(ws, ['commit', '-m', 'two']);
      ok(ws, ['push', 'origin']);
      const newPack = (await listKeys(prefix)).find((k) => k.startsWith('data/') && !packsBefore.has(k)) as string;
      assert.ok(newPack, 'v002 added a pack');
      const unchanged = (): string => refsOf(cgit) + (existsSync(path.join(c, '.mstore', 'reflog.jsonl')) ? readFileSync(path.join(c, '.mstore', 'reflog.jsonl'), 'utf8') : '');
      const before = unchanged();

      // The v002 commit object replaced by another valid object (first: pull fetches git objects first).
      const commit = (await openS3Remote(url, {}).listRefs()).get('refs/heads/latest') as string;
      const other = loose('blob', Buffer.from('something else\n'));
      const goodCommit = await getObject(`${prefix}/git/${commit}`);
      await putObject(`${prefix}/git/${commit}`, deflateSync(other.data));
      const p2 = mstore(c, ['pull', 'origin']);
      assert.is(p2.code, 1);
      assert.is(p2.stderr.trim().split('\n').length, 1, `one line: ${p2.stderr}`);
      assert.ok(p2.stderr.includes(`${url}/git/${commit}`) && /do not hash to its id/.test(p2.stderr), p2.stderr);
      assert.is(unchanged(), before, 'a failed pull moves no ref');
      const cl2 = mstore(root, ['clone', url, 'c3']);
      assert.is(cl2.code, 1);
      assert.ok(cl2.stderr.includes(`git/${commit}`), cl2.stderr);
      await putObject(`${prefix}/git/${commit}`, goodCommit);

      // A flipped byte inside the first chunk of v002's pack.
      const original = await getObject(`${prefix}/${newPack}`);
      const bad = Buffer.from(original);
      bad[8 + 3] ^= 0x40;
      await putObject(`${prefix}/${newPack}`, bad);
      const p = mstore(c, ['pull', 'origin']);
      assert.is(p.code, 1, p.stderr);
      assert.is(p.stderr.trim().split('\n').length, 1, `one line: ${p.stderr}`);
      assert.ok(p.stderr.includes(`${url}/${newPack}: chunk `) && /do not hash to its id/.test(p.stderr), p.stderr);
      assert.is(unchanged(), before, 'a failed pull moves no ref');
      assert.is(mstore(c, ['verify', '--all']).code, 0);
      const cl = mstore(root, ['clone', url, 'c2']);
      assert.is(cl.code, 1);
      assert.ok(cl.stderr.includes(newPack), cl.stderr);
      assert.not.ok(existsSync(path.join(root, 'c2')), 'a failed clone leaves no directory');
      await putObject(`${prefix}/${newPack}`, original);

      // Bad ref names in refs.json.
      const refsJson = await getObject(`${prefix}/refs.json`);
      await putObject(`${prefix}/refs.json`, Buffer.from(JSON.stringify({ refs: { 'refs/heads/../../../etc/x': commit } })));
      const p3 = mstore(c, ['pull', 'origin']);
      assert.is(p3.code, 1);
      assert.match(p3.stderr, /refs\.json: invalid ref name/);
      assert.is(unchanged(), before);
      await putObject(`${prefix}/refs.json`, refsJson);

      // Repaired: the pull goes through.
      ok(c, ['pull', 'origin']);
      assert.is(git(cgit, ['rev-parse', 'latest']).stdout.trim(), commit);
      assert.is(mstore(c, ['verify', '--all']).code, 0);
    } finally {
      cleanup(root);
      await deletePrefix(prefix);
    }
  });
}
