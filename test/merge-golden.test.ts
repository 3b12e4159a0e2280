/**
 * The merge kernel's bits, pinned (issue 19, "Kernel stability"): seeded bases and adapters of
 * every adapter kind the built-in worker supports, in every weight dtype it computes (BF16, F16,
 * F32), merged with the WebAssembly SIMD kernel and with the plain JS one, on the calling thread
 * and on one and three worker threads, with small and default blocks: every run writes the same
 * bytes, and their sha256 is the one written here. A stored recipe names the kernel version
 * (MERGE_KERNEL) and is rebuilt bit for bit years later only if these never change: a change to
 * the arithmetic is a new kernel version (docs/merge.md), never a new digest in this file.
 *
 * The digests were taken from the worker that test/merge-peft.test.ts proves bit-identical to
 * peft's merge_and_unload() and test/merge.test.ts to an explicit torch recipe.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { cleanup, tmpDir } from './helpers.js';
import { mergeLora, WeightMerger } from '../src/merge/merge.js';
import { assembleBaseModel, parseWeightMap, shardNames } from '../src/merge/base-model.js';
import { planPeftFrom } from '../src/merge/peft.js';
import { openSafetensors, readStFile, type StFile } from '../src/merge/tensors.js';
import { FileSource, type ByteSource } from '../src/merge/source.js';
import { StoredSource } from '../src/ops/stored-source.js';
import { ContentReader } from '../src/repo/content-reader.js';
import { Store } from '../src/repo/store.js';
import { listVersionFiles } from '../src/repo/version-files.js';
import { MstoreError } from '../src/lib/errors.js';
import { commitHere, withStoreAt } from './in-process.js';
import { MERGE_KERNEL } from '../src/merge/kernel.js';
import { caseA, caseB, caseC, caseD, caseE, caseF, caseG, resetSeeds, type Case } from './merge-cases.js';

/** sha256 of each weight file the merge writes, per case; the cases are built in this order from the first seed. */
const GOLDEN: Record<string, Record<string, string>> = {
  A: { 'model-00001-of-00002.safetensors': '7035e46bd1e217924fd2fd8c2f7898fbd2b3a560954438bcc88ce4ed6b95da0c', 'model-00002-of-00002.safetensors': '15a59c5f3b23f82fb953c022fa30439adbb05af516c9a0531f09858808868adc' },
  B: { 'model.safetensors': 'e342dab3369f11907486c69fa5181adbcb5cd01c8310ce4b5a807011b2a7e65b' },
  C: { 'model.safetensors': '502c7585d479e42737bf9afd474fd898b2955752f60075f230c62c1fc06e6de8' },
  D: { 'model.safetensors': 'f4b3cb8da1f4a34d714033f6689f265d0cb7db7abef3d9c3997a78d311c398b3' },
  E: { 'model.safetensors': '00f2a9627cb16143ce5243df52c884a0a152ac2d077544923bd21bbde6ff511d' },
  F: { 'model.safetensors': 'b7cad7500c83072a1d7270cd4a3cb6d60a3da08c25b4e288ace80429fc751173' },
  'G-BF16': { 'model.safetensors': '48729b7d6737de02133d7740289425af0f19d6ebd83fe198d3e2b6a80a5a4692' },
  'G-F16': { 'model.safetensors': 'ef3d3462f1a4cf3a07c1d29a12a28778506c696fd62c3ca28144f0b4720b6a99' },
  'G-F32': { 'model.safetensors': 'a01f69b7a99c738905bb811967a8faa6737e6dce65c8350d8c5351f8f03ce6b9' },
  'D-F16': { 'model.safetensors': 'b43994b01a387a1a6f79a17947059e5e71f1a3209f3e87239a13cbf27b83fa25' },
  'D-F32': { 'model.safetensors': '1c127c2e81c79983d7378af126d06d758165dab785a4e842133fd93b28ba221c' },
  'E-BF16': { 'model.safetensors': '429066194466499a93b8f596cea8e8fe03ad3baa277bfb9d53604ea4d176c999' },
  'E-F32': { 'model.safetensors': 'ffda093ce5af2b4e1da3467b186af6f549846241199d6e1f050367af62c792f6' },
};

const root = tmpDir('mstore-golden-');
test.after(() => cleanup(root));

/** Every case, under a fresh directory of `root`. */
function buildCases(name: string): Case[] {
  const dir = path.join(root, name);
  mkdirSync(dir);
  resetSeeds();
  const out = [caseA(dir), caseB(dir), caseC(dir), caseD(dir), caseE(dir)];
  out.push(caseF(dir, out[4]));
  for (const dt of ['BF16', 'F16', 'F32'] as const) out.push(caseG(dir, dt, `G-${dt}`));
  out.push(caseD(dir, 'F16', 'D-F16'), caseD(dir, 'F32', 'D-F32'));
  out.push(caseE(dir, 'BF16', 'E-BF16'), caseE(dir, 'F32', 'E-F32'));
  return out;
}

const digests = (dir: string): Record<string, string> =>
  Object.fromEntries(
    readdirSync(dir)
      .filter((n) => n.endsWith('.safetensors'))
      .sort()
      .map((n) => [n, createHash('sha256').update(readFileSync(path.join(dir, n))).digest('hex')]),
  );

/** The ways of running the same merge that must not change a bit. */
const RUNS: { name: string; threads: number; simd: boolean; blockBytes?: number }[] = [
  { name: 'simd, calling thread', threads: 0, simd: true },
  { name: 'simd, 1 thread', threads: 1, simd: true },
  { name: 'simd, 3 threads, 4 KiB blocks', threads: 3, simd: true, blockBytes: 4096 },
  { name: 'js, calling thread', threads: 0, simd: false },
  { name: 'js, 3 threads', threads: 3, simd: false },
];

test(`kernel ${MERGE_KERNEL}: every adapter kind and dtype merges to the pinned sha256, SIMD and JS, any thread count and block size`, async () => {
  const cases = buildCases('pinned');
  const got: Record<string, Record<string, string>> = {};
  const problems: string[] = [];
  for (const c of cases) {
    for (const [i, run] of RUNS.entries()) {
      const out = path.join(root, `${c.name}-out-${i}`);
      await mergeLora({ base: c.base, adapter: c.adapter, out, threads: run.threads, simd: run.simd, blockBytes: run.blockBytes });
      const d = digests(out);
      cleanup(out);
      if (i === 0) got[c.name] = d;
      else if (JSON.stringify(d) !== JSON.stringify(got[c.name])) problems.push(`${c.name}: ${run.name} wrote other bytes than ${RUNS[0].name}`);
    }
    if (JSON.stringify(got[c.name]) !== JSON.stringify(GOLDEN[c.name])) problems.push(`${c.name}: ${JSON.stringify(got[c.name])} is not the pinned ${JSON.stringify(GOLDEN[c.name] ?? null)}`);
  }
  assert.equal(problems, [], `${problems.length} problem(s):\n${problems.join('\n')}\nwritten now: ${JSON.stringify(got, null, 1)}`);
});

test('the pins cover every case, and a flipped bit in a base is seen (the check can fail)', async () => {
  assert.is(Object.keys(GOLDEN).length, 13, 'one pin per case');
  const [a] = buildCases('flipped');
  const shard = path.join(a.base, 'model-00002-of-00002.safetensors');
  const bytes = readFileSync(shard);
  // The shard's first tensor (layer 1's q_proj, which the adapter changes), first byte.
  bytes[8 + Number(bytes.readBigUInt64LE(0))] ^= 0x01;
  writeFileSync(shard, bytes);
  const out = path.join(root, 'flipped', 'A-out');
  await mergeLora({ base: a.base, adapter: a.adapter, out, threads: 0 });
  assert.is.not(digests(out)['model-00002-of-00002.safetensors'], GOLDEN.A['model-00002-of-00002.safetensors']);
});

test("the merge reads a store's content, each chunk verified, and writes the pinned bytes; a damaged chunk is refused naming it", async () => {
  const [a] = buildCases('stored');
  const ws = path.join(root, 'stored', 'ws');
  cpSync(a.base, path.join(ws, 'base'), { recursive: true });
  cpSync(a.adapter, path.join(ws, 'adapter'), { recursive: true });
  await Store.init(ws).then((s) => s.close());
  const { commit } = await commitHere(ws, 'case A');
  const mergeStored = (): Promise<Record<string, string>> =>
    withStoreAt(ws, async (s) => {
      const files = await listVersionFiles(s.repo, commit!);
      const byPath = new Map(files.map((f) => [f.path, f]));
      const reader = new ContentReader(s.index, s.hasher, s.packsDir);
      const stored = (p: string): Promise<StFile> => {
        const f = byPath.get(p)!;
        assert.is(f.kind, 'lfs', `${p} is stored as content`);
        return readStFile(new StoredSource(reader, `v001:${p}`, f.oid));
      };
      const text = async (p: string): Promise<string> => Buffer.from(await s.repo.readBlob(byPath.get(p)!.blob)).toString('utf8');
      try {
        const weightMap = parseWeightMap(await text('base/model.safetensors.index.json'), 'v001:base/model.safetensors.index.json');
        const shards: StFile[] = [];
        for (const name of shardNames(weightMap)) shards.push(await stored(`base/${name}`));
        const base = assembleBaseModel('v001:base', shards, weightMap);
        const plan = await planPeftFrom({ configText: await text('adapter/adapter_config.json'), configName: 'v001:adapter/adapter_config.json', weights: await stored('adapter/adapter_model.safetensors') }, base);
        const merger = new WeightMerger({ threads: 1 });
        const out: Record<string, string> = {};
        try {
          for (const f of base.files) {
            const h = createHash('sha256');
            await merger.write(f, { write: async (b) => void h.update(b) }, plan, base);
            out[path.basename(f.path)] = h.digest('hex');
          }
        } finally {
          await merger.close();
        }
        return out;
      } finally {
        await reader.close();
      }
    });
  assert.equal(await mergeStored(), GOLDEN.A, "merged from the store's chunks: the pinned bytes");

  // One flipped byte in a chunk of the second shard: refused, naming the file and the chunk.
  const shard = await withStoreAt(ws, async (s) => {
    const f = (await listVersionFiles(s.repo, commit!)).find((x) => x.path === 'base/model-00002-of-00002.safetensors')!;
    const c = s.index.file(Buffer.from(f.oid, 'hex'))!.chunks[0];
    return { id: c.id.toString('hex'), loc: s.index.chunk(c.id)! };
  });
  const pack = readdirSync(path.join(ws, '.mstore', 'packs', shard.loc.pack.slice(0, 2))).map((n) => path.join(ws, '.mstore', 'packs', shard.loc.pack.slice(0, 2), n)).find((n) => n.includes(shard.loc.pack))!;
  const bytes = readFileSync(pack);
  bytes[shard.loc.offset + 100] ^= 0x40;
  writeFileSync(pack, bytes);
  const err = await mergeStored().then(
    () => undefined,
    (e: Error) => e,
  );
  assert.ok(err instanceof MstoreError && err.code === 'ECORRUPT', `a damaged chunk is ECORRUPT: ${err?.message}`);
  assert.match(err!.message, `v001:base/model-00002-of-00002.safetensors: chunk ${shard.id}`);
});

test('a source failing part-way (read-ahead in flight) fails the merge with its error, nothing left running', async () => {
  const cases = buildCases('failing');
  const g = cases.find((c) => c.name === 'G-F32')!;
  for (const failAt of [1, 3, 8, 20]) {
    let reads = 0;
    const file = await FileSource.open(path.join(g.base, 'model.safetensors'));
    const failing: ByteSource = {
      name: file.name,
      size: file.size,
      read: (into, pos) => (++reads === failAt + 2 ? Promise.reject(new MstoreError('ECORRUPT', `${file.name}: chunk x is damaged`)) : file.read(into, pos)),
      close: () => file.close(),
    };
    const st = await readStFile(failing); // two reads: the length and the header
    const base = assembleBaseModel(g.base, [st]);
    const merger = new WeightMerger({ threads: 2, blockBytes: 4096 });
    let written = 0;
    try {
      const plan = await planPeftFrom({ configText: readFileSync(path.join(g.adapter, 'adapter_config.json'), 'utf8'), configName: 'adapter_config.json', weights: await openSafetensors(path.join(g.adapter, 'adapter_model.safetensors')) }, base);
      // Each write takes a timer tick, as a disk write does: the read-ahead fails while one is awaited.
      const slowOut = { write: (b: Uint8Array) => new Promise<void>((resolve) => setTimeout(() => resolve(void (written += b.length)), 1)) };
      const err = await merger.write(st, slowOut, plan, base).then(
        () => undefined,
        (e: Error) => e,
      );
      assert.ok(err instanceof MstoreError && err.code === 'ECORRUPT', `read ${failAt}: the source's error (${err?.message})`);
      assert.ok(written < st.size, `read ${failAt}: the file was not completed (${written} of ${st.size})`);
    } finally {
      await merger.close();
    }
  }
});

test.run();
