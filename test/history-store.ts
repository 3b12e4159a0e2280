/**
 * Builds a store with a long history, the shape of a user who trains daily (issue 15): every
 * version changes one of the eight tensors of a 2 MiB adapter, rewrites metrics.json and adds one
 * more evolution/NNNN.json, so the number of tree entries grows with the square of the history.
 * Optionally a few versions of a larger model on their own line. Built in-process (one commit
 * call per version, no CLI start-up), for bench:history and the history test.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { writeSafetensors, type TensorSpec } from './helpers.js';
import { Store } from '../src/repo/store.js';
import { commit } from '../src/ops/commit.js';

const ADAPTER_TENSORS = 8;

/** Eight BF16 tensors of 256 rows: 8 × 256 × 512 × 2 bytes = 2 MiB by default. */
function adapterTensors(seeds: number[], adapterKiB: number): TensorSpec[] {
  const cols = Math.max(1, Math.round((adapterKiB * 1024) / ADAPTER_TENSORS / 256 / 2));
  return seeds.map((seed, i) => ({ name: `base_model.model.layers.${i}.self_attn.q_proj.lora_A.weight`, dtype: 'BF16', shape: [256, cols], seed }));
}

export interface HistoryShape {
  /** Versions of the adapter on the default line. */
  versions: number;
  /** Size of the adapter in KiB (2048). */
  adapterKiB?: number;
  /** Versions of a large model on the line `big` (0: none). */
  bigVersions?: number;
  /** Size of the large model in MiB. */
  bigMiB?: number;
  onVersion?: (n: number) => void;
}

/** Creates a workspace store in `dir` (which must not hold one) with the given history. */
export async function buildHistory(dir: string, shape: HistoryShape): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const store = await Store.init(dir);
  try {
    const seeds = Array.from({ length: ADAPTER_TENSORS }, (_, i) => 1_000_000 + i);
    mkdirSync(path.join(dir, 'evolution'), { recursive: true });
    for (let v = 1; v <= shape.versions; v++) {
      seeds[v % ADAPTER_TENSORS] = 2_000_000 + v;
      writeSafetensors(path.join(dir, 'adapter_model.safetensors'), adapterTensors(seeds, shape.adapterKiB ?? 2048));
      const loss = 2 / Math.sqrt(v);
      writeFileSync(path.join(dir, 'metrics.json'), `${JSON.stringify({ step: v * 100, loss, eval_loss: loss * 1.1 })}\n`);
      writeFileSync(path.join(dir, 'evolution', `${String(v).padStart(4, '0')}.json`), `${JSON.stringify({ generation: v, fitness: 1 - loss / 3, genome: Array.from({ length: 16 }, (_, i) => (v * 31 + i * 7) % 97) })}\n`);
      await commit(store, { cwd: dir, message: `training run ${v}`, metrics: { loss }, paths: ['adapter_model.safetensors', 'metrics.json', 'evolution'] });
      shape.onVersion?.(v);
    }
    const big = shape.bigVersions ?? 0;
    if (big > 0) {
      const rows = Math.max(1, Math.floor(((shape.bigMiB ?? 64) * 2 ** 20) / 8 / 4096 / 2));
      const bigSeeds = Array.from({ length: 8 }, (_, i) => 3_000_000 + i);
      mkdirSync(path.join(dir, 'big'), { recursive: true });
      for (let v = 1; v <= big; v++) {
        bigSeeds[v % 8] = 4_000_000 + v;
        writeSafetensors(path.join(dir, 'big', 'model.safetensors'), bigSeeds.map((seed, i) => ({ name: `model.layers.${i}.mlp.weight`, dtype: 'BF16', shape: [rows, 4096], seed })));
        await commit(store, { cwd: dir, message: `merged model ${v}`, line: 'big', paths: ['big'] });
      }
      // The workspace is the default line's latest again: status and a no-op commit compare against it.
      rmSync(path.join(dir, 'big'), { recursive: true, force: true });
    }
  } finally {
    await store.close();
  }
}
