/**
 * Real peft as the merge reference (issue 18, part 1): tiny bases made by transformers and torch
 * (a bf16 Qwen3 saved sharded, a bf16 GPT-2, an F32 GPT-2, a bf16 conv net), and for each PEFT
 * adapter kind docs/merge.md lists as supported (Linear on every projection with embedding LoRA
 * and saved embedding layers; rslora with rank and alpha patterns and a trained modules_to_save
 * lm_head; DoRA; all-linear; fan_in_fan_out Conv1D with lora_bias; rank 16 on F32, where the
 * sum's own rounding shows; Conv2d 3×3 and 1×1) an adapter written by peft's
 * save_pretrained and peft's own merge_and_unload() of it (test/python/hf_stack.py).
 * `mstore merge-lora` and workers/merge_lora.py (the torch worker, on the CPU) must each be
 * within 1 ulp of peft on at least 99.99 % of the elements, and transformers must load their
 * output and give peft's logits (the conv net: its output). Embedding LoRA was the case that
 * broke this: peft rounds its Δ to the weight's dtype before adding it (docs/merge.md).
 * Needs the Hugging Face stack (test/hf-helpers.ts); without it this test fails.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanup, mstore, tmpDir } from './helpers.js';
import { hfPython, hfStack } from './hf-helpers.js';

const WORKER = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../workers/merge_lora.py');

interface Comparison {
  elements: number;
  within1ulp: number;
  worst: string | null;
  worstUlp: number;
  tensors: boolean;
  logitsMaxAbs: number;
  logitsScale: number;
}

test("mstore merge-lora and the torch worker match peft's merge_and_unload for every supported adapter kind", async () => {
  const root = tmpDir('mstore-peft-');
  try {
    const made = (await hfStack(['peft-make', root], {}, root)) as { cases: Record<string, string> };
    const cases = Object.keys(made.cases);
    assert.ok(['linear_embedding', 'dora', 'fan_in_fan_out_lora_bias', 'conv'].every((c) => cases.includes(c)));
    for (const c of cases) {
      const args = ['--base', path.join(root, `base-${made.cases[c]}`), '--adapter', path.join(root, `adapter-${c}`)];
      const ts = mstore(root, ['merge-lora', ...args, '--out', path.join(root, `ours-${c}`)]);
      assert.is(ts.code, 0, `merge-lora of ${c}: ${ts.stderr}`);
      const py = spawnSync(hfPython(), [WORKER, ...args, '--out', path.join(root, `torch-${c}`), '--device', 'cpu'], { encoding: 'utf8' });
      assert.is(py.status, 0, `merge_lora.py of ${c}: ${py.stderr}`);
    }
    const res = (await hfStack(['peft-compare', root, 'ours', 'torch'], {}, root)) as Record<string, Record<string, Comparison>>;
    for (const [worker, byCase] of Object.entries(res)) {
      for (const c of cases) {
        const r = byCase[c];
        const what = `${worker} worker, ${c}`;
        assert.ok(r.tensors, `${what}: the same tensors as peft's`);
        assert.ok(r.within1ulp / r.elements >= 0.9999, `${what}: ${r.elements - r.within1ulp} of ${r.elements} elements over 1 ulp (worst ${r.worstUlp} in ${r.worst})`);
        assert.ok(r.logitsMaxAbs <= 1e-2 * r.logitsScale, `${what}: logits differ by ${r.logitsMaxAbs} (scale ${r.logitsScale})`);
      }
    }
  } finally {
    cleanup(root);
  }
});

test.run();
