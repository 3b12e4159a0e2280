/**
 * `npm run screenshots`: the web view's pages as PNGs in docs/img/ (linked from the README and
 * docs/ui.md). Builds a small store like a user's (five training runs with the five statuses,
 * learning curves, metrics, a tag), runs the real `mstore ui` on it and photographs each page
 * in headless Chromium (Debian's `chromium`, or MSTORE_CHROMIUM), at desktop and phone width.
 * The same input gives the same pages, but not the same PNG bytes (dates and fonts differ).
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { listeningUrl, spawnMstore, writeSafetensors } from '../test/helpers.js';
import { Store } from '../src/repo/store.js';
import { commit } from '../src/ops/commit.js';
import { createTag } from '../src/ops/tags.js';
import { setLabels } from '../src/ops/labels.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.resolve(here, '../../docs/img');
const chrome = [process.env.MSTORE_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p): p is string => !!p && existsSync(p));
if (!chrome) throw new Error('no Chromium found: apt install chromium, or set MSTORE_CHROMIUM');

const root = mkdtempSync(path.join(os.tmpdir(), 'mstore-shots-'));
const ws = path.join(root, 'qwen3-math-lora');
mkdirSync(path.join(ws, 'evolution'), { recursive: true });
const runs = [
  { status: 'completed', desc: 'math 10k, r=16, lr 2e-4', lr: 2e-4, floor: 0.62 },
  { status: 'completed', desc: 'math 10k + gsm8k, r=16', lr: 2e-4, floor: 0.55 },
  { status: 'failed', desc: 'lr 1e-3: diverged at step 600', lr: 1e-3, floor: 1.4 },
  { status: 'training', desc: 'math 20k, r=32, lr 1e-4', lr: 1e-4, floor: 0.48 },
  { status: 'pending', desc: 'math 20k, r=32, eval only', lr: 1e-4, floor: 0.48 },
];

const store = await Store.init(ws);
try {
  writeFileSync(path.join(ws, 'adapter_config.json'), `${JSON.stringify({ peft_type: 'LORA', r: 16, lora_alpha: 32, target_modules: ['q_proj', 'v_proj'] }, null, 2)}\n`);
  for (const [i, r] of runs.entries()) {
    const v = i + 1;
    writeSafetensors(path.join(ws, 'adapter_model.safetensors'), [0, 1, 2, 3].flatMap((l) => [
      { name: `base_model.model.model.layers.${l}.self_attn.q_proj.lora_A.weight`, dtype: 'BF16', shape: [16, 512], seed: l * 10 + (l < v ? v : 0) },
      { name: `base_model.model.model.layers.${l}.self_attn.q_proj.lora_B.weight`, dtype: 'BF16', shape: [512, 16], seed: l * 10 + 5 + (l < v ? v : 0) },
    ]));
    const steps = r.status === 'pending' ? 0 : r.status === 'training' ? 24 : 40;
    rmSync(path.join(ws, 'evolution'), { recursive: true, force: true });
    mkdirSync(path.join(ws, 'evolution'));
    for (let s = 1; s <= steps; s++) {
      const diverge = r.status === 'failed' && s > 24 ? (s - 24) * 0.12 : 0;
      const loss = r.floor + 1.9 * Math.exp(-s / (6 + v)) + diverge + 0.03 * Math.sin(s * 1.7 + v);
      writeFileSync(path.join(ws, 'evolution', `${String(s * 25).padStart(4, '0')}.json`), `${JSON.stringify({ step: s * 25, loss: Number(loss.toFixed(4)), eval_accuracy: Number((0.9 - loss / 4).toFixed(4)) })}\n`);
    }
    const final = steps ? r.floor + 1.9 * Math.exp(-steps / (6 + v)) : undefined;
    await commit(store, {
      cwd: ws,
      message: r.desc,
      status: r.status,
      params: { lr: r.lr, r: v >= 4 ? 32 : 16, epochs: 3 },
      metrics: final === undefined ? {} : { loss: Number(final.toFixed(4)), eval_accuracy: Number((0.9 - final / 4).toFixed(4)) },
    });
  }
  await createTag(store, 'production', 'v002');
  await setLabels(store, 'v002', { evaluated_by: 'math-eval 1.3', gsm8k: '71.2' }, []);
  await commit(store, { cwd: ws, message: 'notes only', status: 'draft', allowEmpty: true });
} finally {
  await store.close();
}

const child = spawnMstore(ws, ['ui', '--listen', '127.0.0.1:0']);
try {
  const url = new URL(await listeningUrl(child)).origin;
  const browser = await chromium.launch({ executablePath: chrome, args: ['--no-sandbox', '--disable-gpu'] });
  mkdirSync(out, { recursive: true });
  const shots: [string, string, number][] = [
    ['ui-versions.png', '/ui/', 1100],
    ['ui-version.png', '/ui/version/v002', 1100],
    ['ui-compare.png', '/ui/compare?a=v001&b=v002', 1100],
    ['ui-curves.png', '/ui/curves?v=v001&v=v002&v=v003&v=v004&metric=loss', 1100],
    ['ui-phone.png', '/ui/', 390],
  ];
  for (const [file, p, width] of shots) {
    const page = await browser.newPage({ viewport: { width, height: 700 }, deviceScaleFactor: 1 });
    await page.goto(`${url}${p}`);
    await page.screenshot({ path: path.join(out, file), fullPage: width > 400 ? false : true });
    await page.close();
    process.stdout.write(`docs/img/${file}\n`);
  }
  await browser.close();
} finally {
  child.kill('SIGTERM');
  rmSync(root, { recursive: true, force: true });
}
