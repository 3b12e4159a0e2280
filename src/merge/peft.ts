/**
 * PEFT LoRA adapters (docs/merge.md): adapter_config.json + adapter_model.safetensors, keys
 * `base_model.model.<module>.lora_A.weight` [r, in] / `.lora_B.weight` [out, r],
 * `.lora_embedding_A` [r, num] / `.lora_embedding_B` [dim, r], `.lora_magnitude_vector` (DoRA),
 * `.lora_B.bias` (lora_bias), and full tensors of modules_to_save / trained biases.
 */
import path from 'node:path';
import { MstoreError } from '../lib/errors.js';
import { addOp, checkOp, type AdapterPlan, type TensorOp } from './plan.js';
import type { BaseModel } from './base-model.js';
import { readStFile, type StFile, type TensorRef } from './tensors.js';
import type { ModelFiles } from './source.js';

export interface PeftConfig {
  r: number;
  loraAlpha: number;
  useRslora: boolean;
  fanInFanOut: boolean;
  targetModules: string[] | string | null;
  modulesToSave: string[];
  rankPattern: Record<string, number>;
  alphaPattern: Record<string, number>;
  useDora: boolean;
  bias: 'none' | 'all' | 'lora_only';
  loraBias: boolean;
}

const PREFIX = 'base_model.model.';

function bad(file: string, what: string): never {
  throw new MstoreError('EBADINPUT', `${file}: ${what}`);
}

function numberRecord(v: unknown, file: string, key: string): Record<string, number> {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v) || !Object.values(v).every((x) => typeof x === 'number' && Number.isFinite(x))) {
    bad(file, `${key} is not an object of numbers`);
  }
  return v as Record<string, number>;
}

/** Reads the fields the merge uses, with PEFT's defaults; refuses what it cannot merge. */
export function parsePeftConfig(raw: unknown, file: string): PeftConfig {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) bad(file, 'not a JSON object');
  const c = raw as Record<string, unknown>;
  if (c.peft_type !== undefined && c.peft_type !== 'LORA') bad(file, `peft_type ${String(c.peft_type)} is not supported (LORA only)`);
  const r = c.r ?? 8;
  if (typeof r !== 'number' || !Number.isInteger(r) || r <= 0) bad(file, `r must be a positive integer, got ${JSON.stringify(c.r)}`);
  const alpha = c.lora_alpha ?? 8;
  if (typeof alpha !== 'number' || !Number.isFinite(alpha)) bad(file, `lora_alpha must be a number, got ${JSON.stringify(c.lora_alpha)}`);
  const bias = c.bias ?? 'none';
  if (bias !== 'none' && bias !== 'all' && bias !== 'lora_only') bad(file, `bias must be none, all or lora_only, got ${JSON.stringify(c.bias)}`);
  const mts = c.modules_to_save ?? [];
  if (!Array.isArray(mts) || !mts.every((m) => typeof m === 'string')) bad(file, 'modules_to_save is not a list of module names');
  const tm = c.target_modules ?? null;
  if (tm !== null && typeof tm !== 'string' && !(Array.isArray(tm) && tm.every((m) => typeof m === 'string'))) bad(file, 'target_modules is not a string or a list of strings');
  for (const key of ['layer_replication', 'trainable_token_indices'] as const) {
    if (c[key] !== undefined && c[key] !== null) bad(file, `${key} is not supported by the merge`);
  }
  if (c.use_alora === true) bad(file, 'aLoRA (use_alora) adapters cannot be merged');
  return {
    r,
    loraAlpha: alpha,
    useRslora: c.use_rslora === true,
    fanInFanOut: c.fan_in_fan_out === true,
    targetModules: tm as string[] | string | null,
    modulesToSave: mts as string[],
    rankPattern: numberRecord(c.rank_pattern, file, 'rank_pattern'),
    alphaPattern: numberRecord(c.alpha_pattern, file, 'alpha_pattern'),
    useDora: c.use_dora === true,
    bias,
    loraBias: c.lora_bias === true,
  };
}

/**
 * rank_pattern / alpha_pattern lookup: the first key k (in the file's order) with
 * Python's `re.match(rf"(.*\.)?({k})$", module)` wins.
 */
export function patternValue(pattern: Record<string, number>, module: string): number | undefined {
  for (const [k, v] of Object.entries(pattern)) {
    let re: RegExp;
    try {
      re = new RegExp(`^(?:.*\\.)?(?:${k})$`);
    } catch {
      throw new MstoreError('EBADINPUT', `adapter_config.json: pattern key '${k}' is not a valid regular expression`);
    }
    if (re.test(module)) return v;
  }
  return undefined;
}

interface LoraModule {
  A?: TensorRef;
  B?: TensorRef;
  embA?: TensorRef;
  embB?: TensorRef;
  bias?: TensorRef;
  mag?: TensorRef;
}

export function noTarget(key: string, target: string, why = ''): never {
  throw new MstoreError('EBADINPUT', `adapter key ${key} lands on no base tensor (the base has no ${target}${why})`);
}

/** Tied embeddings store no lm_head.weight: say so when an adapter targets it. */
function tiedHint(target: string): string {
  return target === 'lm_head.weight' ? '; it ties lm_head to the input embedding (tie_word_embeddings)' : '';
}

const UNSUPPORTED = /(^|\.)(lora_E|hada_|lokr_|ia3_|vera_|oft_|boft_|trainable_tokens)/;

/** The PEFT adapter in `files` (adapter_config.json + adapter_model.safetensors). */
export async function planPeft(files: ModelFiles, base: BaseModel): Promise<AdapterPlan> {
  const names = (await files.list()).map((e) => e.path);
  const configName = path.join(files.name, 'adapter_config.json');
  const configText = await files.text('adapter_config.json');
  if (!names.includes('adapter_model.safetensors')) {
    const dir = files.name;
    throw new MstoreError('EBADINPUT', names.includes('adapter_model.bin') ? `${dir} holds adapter_model.bin (pickle): only adapter_model.safetensors is supported` : `${dir} has no adapter_model.safetensors`);
  }
  return planPeftFrom({ configText, configName, weights: await readStFile(await files.source('adapter_model.safetensors'), 'adapter_model.safetensors') }, base);
}

/** A PEFT adapter wherever it is read from: its config's text (`configName` in errors) and its weights. */
export async function planPeftFrom(adapter: { configText: string; configName: string; weights: StFile }, base: BaseModel): Promise<AdapterPlan> {
  const cfgFile = adapter.configName;
  let raw: unknown;
  try {
    raw = JSON.parse(adapter.configText);
  } catch (e) {
    throw new MstoreError('EBADINPUT', `${cfgFile}: ${(e as Error).message}`);
  }
  const cfg = parsePeftConfig(raw, cfgFile);
  const st = adapter.weights;
  const weights = st.path;
  const modules = new Map<string, LoraModule>();
  const ops = new Map<string, TensorOp>();
  const mod = (m: string): LoraModule => {
    let e = modules.get(m);
    if (!e) modules.set(m, (e = {}));
    return e;
  };
  for (const info of st.header.tensors) {
    const ref: TensorRef = { file: st, info };
    const key = info.name;
    const k = key.startsWith(PREFIX) ? key.slice(PREFIX.length) : key;
    let m: RegExpExecArray | null;
    if ((m = /^(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$/.exec(k))) {
      const e = mod(m[1]);
      if (m[2] === 'A') e.A = ref;
      else e.B = ref;
    } else if ((m = /^(.+)\.lora_B(?:\.[^.]+)?\.bias$/.exec(k))) {
      mod(m[1]).bias = ref;
    } else if ((m = /^(.+)\.lora_embedding_([AB])(?:\.[^.]+)?$/.exec(k))) {
      const e = mod(m[1]);
      if (m[2] === 'A') e.embA = ref;
      else e.embB = ref;
    } else if ((m = /^(.+)\.lora_magnitude_vector(?:\.[^.]+)?(?:\.weight)?$/.exec(k))) {
      mod(m[1]).mag = ref;
    } else if (UNSUPPORTED.test(k) || /(^|\.)lora_/.test(k)) {
      throw new MstoreError('EBADINPUT', `adapter key ${key} is not a LoRA weight the merge understands (LoRA, embedding LoRA, DoRA only)`);
    } else if ((m = /^(.+)\.base_layer\.([^.]+)$/.exec(k))) {
      // save_embedding_layers: the whole (resized) base layer travels with the adapter.
      const target = `${m[1]}.${m[2]}`;
      if (!base.tensors.has(target)) noTarget(key, target, tiedHint(target));
      addOp(ops, { target, keys: [key], replace: ref });
    } else {
      // A full tensor: modules_to_save (also stored as <module>.modules_to_save.<name>.<param>) or a trained bias.
      const target = k.replace(/\.modules_to_save\.[^.]+\./, '.');
      const module = target.includes('.') ? target.slice(0, target.lastIndexOf('.')) : target;
      const saved = cfg.modulesToSave.some((s) => module === s || module.endsWith(`.${s}`));
      const trainedBias = target.endsWith('.bias') && cfg.bias !== 'none';
      if (!saved && !trainedBias) {
        throw new MstoreError('EBADINPUT', `adapter key ${key} is not a LoRA weight and its module is not in modules_to_save`);
      }
      if (!base.tensors.has(target)) noTarget(key, target, tiedHint(target));
      addOp(ops, { target, keys: [key], replace: ref });
    }
  }
  for (const [name, e] of modules) {
    const keys = [e.A, e.B, e.embA, e.embB, e.bias, e.mag].filter((x): x is TensorRef => !!x).map((x) => x.info.name);
    const first = keys[0];
    const rank = patternValue(cfg.rankPattern, name) ?? cfg.r;
    const alpha = patternValue(cfg.alphaPattern, name) ?? cfg.loraAlpha;
    const scale = cfg.useRslora ? alpha / Math.sqrt(rank) : alpha / rank;
    const embedding = !!(e.embA || e.embB);
    if (embedding && (e.A || e.B)) throw new MstoreError('EBADINPUT', `module ${name} has both lora_A/lora_B and lora_embedding_A/B`);
    const down = embedding ? e.embA : e.A;
    const up = embedding ? e.embB : e.B;
    if (!down || !up) {
      if (down || up) {
        const [has, lacks] = embedding ? (down ? ['lora_embedding_A', 'lora_embedding_B'] : ['lora_embedding_B', 'lora_embedding_A']) : down ? ['lora_A', 'lora_B'] : ['lora_B', 'lora_A'];
        throw new MstoreError('EBADINPUT', `module ${name} has ${has} but no ${lacks} (${first})`);
      }
      throw new MstoreError('EBADINPUT', `adapter key ${first} belongs to module ${name}, which has no lora_A/lora_B`);
    }
    const actual = down.info.shape[0];
    if (actual !== rank) {
      const why = cfg.rankPattern && patternValue(cfg.rankPattern, name) !== undefined ? 'rank_pattern' : 'r';
      throw new MstoreError('EBADINPUT', `rank mismatch for module ${name}: ${down.info.name} has rank ${actual} but adapter_config.json (${why}) says ${rank}`);
    }
    if (e.mag && !cfg.useDora) throw new MstoreError('EBADINPUT', `adapter key ${e.mag.info.name} is a DoRA magnitude but use_dora is not set`);
    if (cfg.useDora && !e.mag) throw new MstoreError('EBADINPUT', `use_dora is set but module ${name} has no lora_magnitude_vector`);
    if (e.mag && (embedding || cfg.fanInFanOut)) {
      throw new MstoreError('EBADINPUT', `DoRA is not supported for ${embedding ? 'embedding' : 'fan_in_fan_out'} module ${name}`);
    }
    const target = `${name}.weight`;
    const baseRef = base.tensors.get(target);
    if (!baseRef) noTarget(first, target, tiedHint(target));
    if (e.mag && baseRef.info.shape.length !== 2) throw new MstoreError('EBADINPUT', `DoRA is not supported for conv module ${name} (${target})`);
    const op: TensorOp = {
      target,
      keys: keys.filter((k) => k !== e.bias?.info.name),
      delta: { kind: 'lowrank', up, down, transpose: embedding || cfg.fanInFanOut, rank, alpha, scale, magnitude: e.mag, roundDelta: embedding },
    };
    addOp(ops, op);
    if (e.bias) {
      if (!cfg.loraBias) throw new MstoreError('EBADINPUT', `adapter key ${e.bias.info.name} is a lora_B bias but lora_bias is not set`);
      const bt = `${name}.bias`;
      if (!base.tensors.has(bt)) noTarget(e.bias.info.name, bt);
      addOp(ops, { target: bt, keys: [e.bias.info.name], delta: { kind: 'vector', vector: e.bias, scale } });
    }
  }
  for (const op of ops.values()) {
    const b = base.tensors.get(op.target);
    if (b) checkOp(op, b);
  }
  return { format: 'peft', files: [weights], ops, config: raw as Record<string, unknown> };
}
