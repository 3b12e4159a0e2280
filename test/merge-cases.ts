/**
 * The merge tests' fixtures: seeded tensors (values drawn in fp32, so never NaN), safetensors
 * files written with the kernel's own encoder, and six base/adapter cases (A-F) covering every
 * adapter kind the built-in worker supports, each with its expected operations written out for
 * the torch reference. Shared by merge.test.ts and merge-golden.test.ts. `t` numbers its seeds
 * in call order: `resetSeeds()` first gives the same tensors every time.
 */
import { cpSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createKernel, type DtypeCode } from '../src/merge/kernel.js';
import { mstoreOk, prng } from './helpers.js';

const K = createKernel();

export type Dt = 'BF16' | 'F16' | 'F32';
export interface T {
  name: string;
  dtype: Dt;
  shape: number[];
  values: Float32Array;
}
export const CODE: Record<Dt, DtypeCode> = { BF16: 0, F16: 1, F32: 2 };

/** The seeded PRNG (mulberry32); values are drawn in fp32 and encoded, so no NaN bit patterns. */
export const rng = prng;

let seedCounter = 1;

/** The next `t` draws from the first seed again. */
export function resetSeeds(): void {
  seedCounter = 1;
}

/** A tensor of seeded values in [offset - amp, offset + amp). */
export function t(name: string, dtype: Dt, shape: number[], amp = 0.1, offset = 0): T {
  const n = shape.reduce((a, b) => a * b, 1);
  const r = rng(seedCounter++ * 7919);
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) values[i] = offset + (r() * 2 - 1) * amp;
  return { name, dtype, shape, values };
}

export function writeSt(file: string, tensors: T[], metadata?: Record<string, string>): void {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  const bufs: Buffer[] = [];
  let off = 0;
  for (const x of tensors) {
    const b = K.encode(x.values, CODE[x.dtype]);
    header[x.name] = { dtype: x.dtype, shape: x.shape, data_offsets: [off, off + b.length] };
    bufs.push(Buffer.from(b.buffer, b.byteOffset, b.length));
    off += b.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(file, Buffer.concat([len, Buffer.from(json), ...bufs]));
}

export interface Ref {
  file: string;
  key: string;
}
/** One expected change, described explicitly for the reference (not derived by mstore's parser). */
export interface RecipeOp {
  target: string;
  src?: Ref;
  up?: Ref;
  down?: Ref;
  magnitude?: Ref;
  vector?: Ref;
  transpose?: boolean;
  /** Δ rounded to the weight's dtype before the add (embedding LoRA, as peft merges it). */
  roundDelta?: boolean;
  scale?: number;
}
export interface Case {
  name: string;
  base: string;
  baseFiles: string[];
  adapter: string;
  ops: RecipeOp[];
}

export const H = 64;
export const QD = 64;
export const KV = 32;
export const INTER = 160;
export const VOCAB = 320;
export const PROJ: [string, number, number][] = [
  ['self_attn.q_proj', QD, H],
  ['self_attn.k_proj', KV, H],
  ['self_attn.v_proj', KV, H],
  ['self_attn.o_proj', H, QD],
  ['mlp.gate_proj', INTER, H],
  ['mlp.up_proj', INTER, H],
  ['mlp.down_proj', H, INTER],
];

/** Qwen3-like tensor set (names and roles; small dims). */
export function qwen(dtype: Dt, layers: number, opts: { qBias?: boolean } = {}): T[] {
  const ts: T[] = [t('model.embed_tokens.weight', dtype, [VOCAB, H])];
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}`;
    ts.push(t(`${p}.input_layernorm.weight`, dtype, [H], 0.05, 1));
    for (const [m, o, i] of PROJ) {
      ts.push(t(`${p}.${m}.weight`, dtype, [o, i]));
      if (opts.qBias && m === 'self_attn.q_proj') ts.push(t(`${p}.${m}.bias`, dtype, [o], 0.02));
    }
    ts.push(t(`${p}.self_attn.q_norm.weight`, dtype, [16], 0.05, 1));
    ts.push(t(`${p}.self_attn.k_norm.weight`, dtype, [16], 0.05, 1));
    ts.push(t(`${p}.post_attention_layernorm.weight`, dtype, [H], 0.05, 1));
  }
  ts.push(t('model.norm.weight', dtype, [H], 0.05, 1));
  ts.push(t('lm_head.weight', dtype, [VOCAB, H]));
  return ts;
}

export const ADAPTER_ST = 'adapter_model.safetensors';


export function peftKey(module: string, part: string): string {
  return `base_model.model.${module}.${part}`;
}

/** A: BF16, sharded, all seven projections, rank_pattern/alpha_pattern, embedding LoRA, modules_to_save lm_head. */
export function caseA(root: string): Case {
  const base = path.join(root, 'A-base');
  const ad = path.join(root, 'A-adapter');
  mkdirSync(path.join(base, 'extra'), { recursive: true });
  mkdirSync(ad);
  const ts = qwen('BF16', 2);
  const half = Math.ceil(ts.length / 2);
  const shards = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
  writeSt(path.join(base, shards[0]), ts.slice(0, half), { format: 'pt' });
  writeSt(path.join(base, shards[1]), ts.slice(half), { format: 'pt' });
  const weightMap: Record<string, string> = {};
  ts.forEach((x, i) => (weightMap[x.name] = shards[i < half ? 0 : 1]));
  writeFileSync(path.join(base, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }, null, 2));
  writeFileSync(path.join(base, 'config.json'), JSON.stringify({ model_type: 'qwen3', hidden_size: H, tie_word_embeddings: true, torch_dtype: 'bfloat16' }, null, 2));
  writeFileSync(path.join(base, 'tokenizer.json'), JSON.stringify({ version: '1.0', model: { type: 'BPE' } }));
  writeFileSync(path.join(base, 'generation_config.json'), JSON.stringify({ do_sample: true }));
  writeFileSync(path.join(base, 'extra', 'notes.txt'), 'kept\n');
  writeFileSync(path.join(base, 'pytorch_model.bin'), 'stale weights');
  const file = path.join(ad, ADAPTER_ST);
  const at: T[] = [];
  const ops: RecipeOp[] = [];
  for (let l = 0; l < 2; l++) {
    for (const [m, o, i] of PROJ) {
      const module = `model.layers.${l}.${m}`;
      const r = m === 'mlp.down_proj' ? 4 : 8; // rank_pattern {down_proj: 4}
      const alpha = l === 1 && m === 'self_attn.q_proj' ? 32 : 16; // alpha_pattern
      const A = t(peftKey(module, 'lora_A.weight'), l === 0 && m === 'self_attn.q_proj' ? 'BF16' : 'F32', [r, i]);
      const B = t(peftKey(module, 'lora_B.weight'), 'F32', [o, r]);
      at.push(A, B);
      ops.push({ target: `${module}.weight`, up: { file, key: B.name }, down: { file, key: A.name }, scale: alpha / r });
    }
  }
  const eA = t(peftKey('model.embed_tokens', 'lora_embedding_A'), 'F32', [8, VOCAB]);
  const eB = t(peftKey('model.embed_tokens', 'lora_embedding_B'), 'F32', [H, 8]);
  const head = t(peftKey('lm_head', 'weight'), 'F32', [VOCAB, H]);
  at.push(eA, eB, head);
  ops.push({ target: 'model.embed_tokens.weight', up: { file, key: eB.name }, down: { file, key: eA.name }, transpose: true, roundDelta: true, scale: 16 / 8 });
  ops.push({ target: 'lm_head.weight', src: { file, key: head.name } });
  writeSt(file, at, { format: 'pt' });
  writeFileSync(
    path.join(ad, 'adapter_config.json'),
    JSON.stringify({
      peft_type: 'LORA',
      r: 8,
      lora_alpha: 16,
      target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj', 'embed_tokens'],
      modules_to_save: ['lm_head'],
      rank_pattern: { down_proj: 4 },
      alpha_pattern: { 'layers\\.1\\.self_attn\\.q_proj': 32 },
      use_rslora: false,
      fan_in_fan_out: false,
      use_dora: false,
      bias: 'none',
    }),
  );
  return { name: 'A', base, baseFiles: shards.map((s) => path.join(base, s)), adapter: ad, ops };
}

/** B: F16, one file, use_rslora, lora_bias on q_proj. */
export function caseB(root: string): Case {
  const base = path.join(root, 'B-base');
  const ad = path.join(root, 'B-adapter');
  mkdirSync(base);
  mkdirSync(ad);
  writeSt(path.join(base, 'model.safetensors'), qwen('F16', 1, { qBias: true }));
  writeFileSync(path.join(base, 'config.json'), JSON.stringify({ model_type: 'qwen2', tie_word_embeddings: false }));
  const file = path.join(ad, ADAPTER_ST);
  const at: T[] = [];
  const ops: RecipeOp[] = [];
  const scale = 8 / Math.sqrt(8);
  for (const [m, o, i] of PROJ.filter(([m]) => m === 'self_attn.q_proj' || m === 'self_attn.v_proj')) {
    const module = `model.layers.0.${m}`;
    const A = t(peftKey(module, 'lora_A.weight'), 'F16', [8, i]);
    const B = t(peftKey(module, 'lora_B.weight'), 'F16', [o, 8]);
    at.push(A, B);
    ops.push({ target: `${module}.weight`, up: { file, key: B.name }, down: { file, key: A.name }, scale });
    if (m === 'self_attn.q_proj') {
      const bias = t(peftKey(module, 'lora_B.bias'), 'F32', [o], 0.01);
      at.push(bias);
      ops.push({ target: `${module}.bias`, vector: { file, key: bias.name }, scale });
    }
  }
  // save_embedding_layers: the (trained) embedding travels whole as base_layer, with a LoRA on top
  const emb = t(peftKey('model.embed_tokens', 'base_layer.weight'), 'F16', [VOCAB, H]);
  const eA = t(peftKey('model.embed_tokens', 'lora_embedding_A'), 'F16', [8, VOCAB]);
  const eB = t(peftKey('model.embed_tokens', 'lora_embedding_B'), 'F16', [H, 8]);
  at.push(emb, eA, eB);
  ops.push({ target: 'model.embed_tokens.weight', src: { file, key: emb.name }, up: { file, key: eB.name }, down: { file, key: eA.name }, transpose: true, roundDelta: true, scale });
  writeSt(file, at);
  writeFileSync(path.join(ad, 'adapter_config.json'), JSON.stringify({ r: 8, lora_alpha: 8, use_rslora: true, lora_bias: true, target_modules: ['q_proj', 'v_proj', 'embed_tokens'] }));
  return { name: 'B', base, baseFiles: [path.join(base, 'model.safetensors')], adapter: ad, ops };
}

/** C: GPT-2-like F32 Conv1D weights [in, out] with fan_in_fan_out. */
export function caseC(root: string): Case {
  const base = path.join(root, 'C-base');
  const ad = path.join(root, 'C-adapter');
  mkdirSync(base);
  mkdirSync(ad);
  const ts: T[] = [t('transformer.wte.weight', 'F32', [VOCAB, H])];
  const mods: [string, number, number][] = [];
  for (let l = 0; l < 2; l++) {
    const p = `transformer.h.${l}`;
    ts.push(t(`${p}.ln_1.weight`, 'F32', [H], 0.05, 1));
    ts.push(t(`${p}.attn.c_attn.weight`, 'F32', [H, 3 * H]), t(`${p}.attn.c_attn.bias`, 'F32', [3 * H], 0.02));
    ts.push(t(`${p}.attn.c_proj.weight`, 'F32', [H, H]));
    ts.push(t(`${p}.mlp.c_fc.weight`, 'F32', [H, 4 * H]));
    mods.push([`${p}.attn.c_attn`, H, 3 * H], [`${p}.attn.c_proj`, H, H], [`${p}.mlp.c_fc`, H, 4 * H]);
  }
  writeSt(path.join(base, 'model.safetensors'), ts);
  writeFileSync(path.join(base, 'config.json'), JSON.stringify({ model_type: 'gpt2' }));
  const file = path.join(ad, ADAPTER_ST);
  const at: T[] = [];
  const ops: RecipeOp[] = [];
  for (const [module, inF, outF] of mods) {
    const A = t(peftKey(module, 'lora_A.weight'), 'F32', [4, inF]);
    const B = t(peftKey(module, 'lora_B.weight'), 'F32', [outF, 4]);
    at.push(A, B);
    ops.push({ target: `${module}.weight`, up: { file, key: B.name }, down: { file, key: A.name }, transpose: true, scale: 8 / 4 });
  }
  for (let l = 0; l < 2; l++) {
    const b = t(`base_model.model.transformer.h.${l}.attn.c_attn.bias`, 'F32', [3 * H], 0.02);
    at.push(b);
    ops.push({ target: `transformer.h.${l}.attn.c_attn.bias`, src: { file, key: b.name } });
  }
  writeSt(file, at);
  writeFileSync(path.join(ad, 'adapter_config.json'), JSON.stringify({ r: 4, lora_alpha: 8, fan_in_fan_out: true, bias: 'all', target_modules: ['c_attn', 'c_proj', 'c_fc'] }));
  return { name: 'C', base, baseFiles: [path.join(base, 'model.safetensors')], adapter: ad, ops };
}

/** D: DoRA on q_proj and v_proj (BF16; the golden tests also build it in F16 and F32, by other names). */
export function caseD(root: string, dtype: Dt = 'BF16', name = 'D'): Case {
  const base = path.join(root, `${name}-base`);
  const ad = path.join(root, `${name}-adapter`);
  mkdirSync(base);
  mkdirSync(ad);
  writeSt(path.join(base, 'model.safetensors'), qwen(dtype, 1));
  writeFileSync(path.join(base, 'config.json'), JSON.stringify({ model_type: 'qwen3', tie_word_embeddings: false }));
  const file = path.join(ad, ADAPTER_ST);
  const at: T[] = [];
  const ops: RecipeOp[] = [];
  for (const [m, o, i] of PROJ.filter(([m]) => m === 'self_attn.q_proj' || m === 'self_attn.v_proj')) {
    const module = `model.layers.0.${m}`;
    const A = t(peftKey(module, 'lora_A.weight'), 'F32', [8, i]);
    const B = t(peftKey(module, 'lora_B.weight'), 'F32', [o, 8]);
    const mag = t(peftKey(module, 'lora_magnitude_vector'), 'F32', [o], 0.1, 0.5);
    at.push(A, B, mag);
    ops.push({ target: `${module}.weight`, up: { file, key: B.name }, down: { file, key: A.name }, magnitude: { file, key: mag.name }, scale: 16 / 8 });
  }
  writeSt(file, at);
  writeFileSync(path.join(ad, 'adapter_config.json'), JSON.stringify({ r: 8, lora_alpha: 16, use_dora: true, target_modules: ['q_proj', 'v_proj'] }));
  return { name, base, baseFiles: [path.join(base, 'model.safetensors')], adapter: ad, ops };
}

/** E: SD-like F16 base (the golden tests also build it in BF16 and F32, by other names), kohya LoRA (one file): conv 3×3, conv 1×1, linear (lossy '_' names), text encoder; alpha F32, BF16 and missing. */
export function caseE(root: string, dtype: Dt = 'F16', name = 'E'): Case {
  const base = path.join(root, `${name}-base`);
  mkdirSync(base);
  const blk = 'down_blocks.0.attentions.0.transformer_blocks.0';
  const ts: T[] = [
    t('down_blocks.0.resnets.0.conv1.weight', dtype, [32, 16, 3, 3]),
    t('down_blocks.0.resnets.0.conv1.bias', dtype, [32], 0.02),
    t('down_blocks.0.attentions.0.norm.weight', dtype, [32], 0.05, 1),
    t('down_blocks.0.attentions.0.proj_in.weight', dtype, [32, 32, 1, 1]),
    t(`${blk}.attn1.to_q.weight`, dtype, [32, 32]),
    t(`${blk}.attn1.to_out.0.weight`, dtype, [32, 32]),
    t(`${blk}.attn1.to_out.0.bias`, dtype, [32], 0.02),
    t('text_model.encoder.layers.0.self_attn.q_proj.weight', dtype, [48, 48]),
    t('text_model.final_layer_norm.weight', dtype, [48], 0.05, 1),
  ];
  writeSt(path.join(base, 'model.safetensors'), ts);
  const file = path.join(root, `${name}-lora.safetensors`);
  const at: T[] = [];
  const ops: RecipeOp[] = [];
  const lora = (kname: string, target: string, r: number, down: number[], up: number[], alpha?: { dtype: Dt; value: number }): void => {
    const D = t(`${kname}.lora_down.weight`, dtype, [r, ...down]);
    const U = t(`${kname}.lora_up.weight`, dtype, [up[0], r, ...up.slice(1)]);
    at.push(D, U);
    if (alpha) at.push({ name: `${kname}.alpha`, dtype: alpha.dtype, shape: [], values: Float32Array.of(alpha.value) });
    ops.push({ target, up: { file, key: U.name }, down: { file, key: D.name }, scale: (alpha?.value ?? r) / r });
  };
  lora('lora_unet_down_blocks_0_resnets_0_conv1', 'down_blocks.0.resnets.0.conv1.weight', 4, [16, 3, 3], [32, 1, 1], { dtype: 'F32', value: 2 });
  lora('lora_unet_down_blocks_0_attentions_0_proj_in', 'down_blocks.0.attentions.0.proj_in.weight', 4, [32, 1, 1], [32, 1, 1], { dtype: 'BF16', value: 4 });
  lora('lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q', `${blk}.attn1.to_q.weight`, 4, [32], [32]);
  lora('lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0', `${blk}.attn1.to_out.0.weight`, 8, [32], [32], { dtype: 'F32', value: 4 });
  lora('lora_te_text_model_encoder_layers_0_self_attn_q_proj', 'text_model.encoder.layers.0.self_attn.q_proj.weight', 4, [48], [48], { dtype: 'F32', value: 1 });
  writeSt(file, at);
  return { name, base, baseFiles: [path.join(base, 'model.safetensors')], adapter: file, ops };
}

/** F: PEFT LoRA on convolutions (3×3 and 1×1) and a linear layer of E's SD-like base, BF16 factors. */
export function caseF(root: string, e: Case): Case {
  const ad = path.join(root, 'F-adapter');
  mkdirSync(ad);
  const file = path.join(ad, ADAPTER_ST);
  const at: T[] = [];
  const ops: RecipeOp[] = [];
  const mods: [string, number[], number][] = [
    ['down_blocks.0.resnets.0.conv1', [16, 3, 3], 32],
    ['down_blocks.0.attentions.0.proj_in', [32, 1, 1], 32],
    ['down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q', [32], 32],
  ];
  for (const [module, inDims, out] of mods) {
    const A = t(peftKey(module, 'lora_A.weight'), 'BF16', [4, ...inDims]);
    const B = t(peftKey(module, 'lora_B.weight'), 'BF16', inDims.length > 1 ? [out, 4, 1, 1] : [out, 4]);
    at.push(A, B);
    ops.push({ target: `${module}.weight`, up: { file, key: B.name }, down: { file, key: A.name }, scale: 4 / 4 });
  }
  writeSt(file, at);
  writeFileSync(path.join(ad, 'adapter_config.json'), JSON.stringify({ r: 4, lora_alpha: 4, target_modules: ['conv1', 'proj_in', 'to_q'] }));
  return { name: 'F', base: e.base, baseFiles: e.baseFiles, adapter: ad, ops };
}

/**
 * G: one adapter of every PEFT LoRA kind on a Qwen-like base of `dtype` (for the golden tests):
 * LoRA on all seven projections (F32 factors, k_proj's in the base dtype), rsLoRA scaling,
 * `lora_bias` on q_proj, an embedding LoRA, and lm_head as `modules_to_save`.
 */
export function caseG(root: string, dtype: Dt, name: string): Case {
  const base = path.join(root, `${name}-base`);
  const ad = path.join(root, `${name}-adapter`);
  mkdirSync(base);
  mkdirSync(ad);
  writeSt(path.join(base, 'model.safetensors'), qwen(dtype, 1, { qBias: true }));
  writeFileSync(path.join(base, 'config.json'), JSON.stringify({ model_type: 'qwen2', tie_word_embeddings: false }));
  const file = path.join(ad, ADAPTER_ST);
  const at: T[] = [];
  const ops: RecipeOp[] = [];
  const scale = 16 / Math.sqrt(8);
  for (const [m, o, i] of PROJ) {
    const module = `model.layers.0.${m}`;
    const A = t(peftKey(module, 'lora_A.weight'), m === 'self_attn.k_proj' ? dtype : 'F32', [8, i]);
    const B = t(peftKey(module, 'lora_B.weight'), m === 'self_attn.k_proj' ? dtype : 'F32', [o, 8]);
    at.push(A, B);
    ops.push({ target: `${module}.weight`, up: { file, key: B.name }, down: { file, key: A.name }, scale });
    if (m === 'self_attn.q_proj') {
      const bias = t(peftKey(module, 'lora_B.bias'), 'F32', [o], 0.01);
      at.push(bias);
      ops.push({ target: `${module}.bias`, vector: { file, key: bias.name }, scale });
    }
  }
  const eA = t(peftKey('model.embed_tokens', 'lora_embedding_A'), 'F32', [8, VOCAB]);
  const eB = t(peftKey('model.embed_tokens', 'lora_embedding_B'), 'F32', [H, 8]);
  const head = t(peftKey('lm_head', 'weight'), 'F32', [VOCAB, H]);
  at.push(eA, eB, head);
  ops.push({ target: 'model.embed_tokens.weight', up: { file, key: eB.name }, down: { file, key: eA.name }, transpose: true, roundDelta: true, scale });
  ops.push({ target: 'lm_head.weight', src: { file, key: head.name } });
  writeSt(file, at);
  writeFileSync(
    path.join(ad, 'adapter_config.json'),
    JSON.stringify({ r: 8, lora_alpha: 16, use_rslora: true, lora_bias: true, target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj', 'embed_tokens'], modules_to_save: ['lm_head'] }),
  );
  return { name, base, baseFiles: [path.join(base, 'model.safetensors')], adapter: ad, ops };
}

/**
 * A new store at `ws` with a case's base as `base/` (version v001) and its adapter as `adapter/`
 * (adapters/v001; a kohya file goes into the directory); `extras` adds files to `base/` first.
 */
export function storeCase(ws: string, base: string, adapter: string, extras: (baseDir: string) => void = () => undefined): string {
  const ok = (args: string[]): void => void mstoreOk(ws, args);
  mkdirSync(ws);
  ok(['init']);
  cpSync(base, path.join(ws, 'base'), { recursive: true });
  extras(path.join(ws, 'base'));
  ok(['commit', '-m', 'base', 'base']);
  if (statSync(adapter).isDirectory()) cpSync(adapter, path.join(ws, 'adapter'), { recursive: true });
  else {
    mkdirSync(path.join(ws, 'adapter'));
    cpSync(adapter, path.join(ws, 'adapter', path.basename(adapter)));
  }
  ok(['commit', '-m', 'adapter', '--line', 'adapters', 'adapter']);
  return ws;
}
