/**
 * kohya-ss (sd-scripts) LoRA files: `lora_unet_…` / `lora_te_…` (lora_te1_, lora_te2_ for SDXL)
 * keys with `.lora_down.weight` [r, in(, kh, kw)], `.lora_up.weight` [out, r(, 1, 1)] and a
 * scalar `.alpha`. The module name is the base module path with every '.' turned into '_',
 * which is lossy, so names are resolved against the base model's own tensor names.
 */
import { MstoreError } from '../lib/errors.js';
import { addOp, checkOp, type AdapterPlan, type TensorOp } from './plan.js';
import type { BaseModel } from './base-model.js';
import { elements, readTensorF32, type StFile, type TensorRef } from './tensors.js';
import type { Kernel } from './kernel.js';

interface KohyaModule {
  down?: TensorRef;
  up?: TensorRef;
  alpha?: TensorRef;
}

const KEY = /^(lora_(?:unet|te\d*|transformer))_(.+?)\.(lora_down\.weight|lora_up\.weight|alpha)$/;

/** Does this safetensors key set look like a kohya LoRA? */
export function isKohyaKey(key: string): boolean {
  return /^lora_(unet|te\d*|transformer)_/.test(key);
}

/** Index of base modules (tensor names ending in .weight) by their '.'→'_' form. */
function underscoreIndex(base: BaseModel): Map<string, string[]> {
  const idx = new Map<string, string[]>();
  for (const name of base.tensors.keys()) {
    if (!name.endsWith('.weight')) continue;
    const module = name.slice(0, -'.weight'.length);
    const u = module.replace(/\./g, '_');
    const list = idx.get(u);
    if (list) list.push(module);
    else idx.set(u, [module]);
  }
  return idx;
}

/** The base module a kohya name means: exact '.'→'_' match, else a unique match after a prefix (`unet.…`). */
export function resolveKohyaModule(name: string, idx: Map<string, string[]>, key: string): string {
  const exact = idx.get(name);
  let found = exact ?? [];
  if (!found.length) {
    for (const [u, mods] of idx) if (u.endsWith(`_${name}`)) found = found.concat(mods);
  }
  if (found.length === 1) return found[0];
  if (!found.length) throw new MstoreError('EBADINPUT', `adapter key ${key} lands on no base tensor (no base module is named like ${name})`);
  throw new MstoreError('EBADINPUT', `adapter key ${key} is ambiguous: base modules ${found.slice(0, 4).join(', ')} all read as ${name}`);
}

/** A kohya LoRA file wherever it is read from (its keys checked by isKohyaKey first). */
export async function planKohya(st: StFile, base: BaseModel, kernel: Kernel): Promise<AdapterPlan> {
  const file = st.path;
  const modules = new Map<string, KohyaModule>();
  for (const info of st.header.tensors) {
    const ref: TensorRef = { file: st, info };
    const m = KEY.exec(info.name);
    if (!m) {
      if (/\.dora_scale$/.test(info.name)) throw new MstoreError('EBADINPUT', `adapter key ${info.name}: DoRA is not supported for kohya adapters`);
      if (/(hada_|lokr_|lora_mid)/.test(info.name)) throw new MstoreError('EBADINPUT', `adapter key ${info.name}: LyCORIS (LoHa/LoKr/Tucker) weights are not supported`);
      throw new MstoreError('EBADINPUT', `adapter key ${info.name} is not a kohya LoRA key (lora_unet_/lora_te_… .lora_down/.lora_up/.alpha)`);
    }
    const id = `${m[1]}_${m[2]}`;
    let e = modules.get(id);
    if (!e) modules.set(id, (e = {}));
    if (m[3] === 'alpha') e.alpha = ref;
    else if (m[3] === 'lora_up.weight') e.up = ref;
    else e.down = ref;
  }
  const idx = underscoreIndex(base);
  const ops = new Map<string, TensorOp>();
  for (const [id, e] of modules) {
    const anyKey = (e.down ?? e.up ?? e.alpha)!.info.name;
    if (!e.down || !e.up) throw new MstoreError('EBADINPUT', `module ${id} has ${e.down ? 'lora_down but no lora_up' : e.up ? 'lora_up but no lora_down' : 'an alpha but no lora_down/lora_up'} (${anyKey})`);
    const prefix = /^lora_(?:unet|te\d*|transformer)_/.exec(id)![0];
    const module = resolveKohyaModule(id.slice(prefix.length), idx, anyKey);
    const rank = e.down.info.shape[0];
    let alpha = rank;
    if (e.alpha) {
      if (elements(e.alpha.info.shape) !== 1) throw new MstoreError('EBADINPUT', `adapter key ${e.alpha.info.name} is not a scalar`);
      const a = (await readTensorF32(e.alpha, kernel))[0];
      if (!Number.isFinite(a)) throw new MstoreError('EBADINPUT', `adapter key ${e.alpha.info.name} is not finite`);
      if (a !== 0) alpha = a;
    }
    const target = `${module}.weight`;
    const op: TensorOp = {
      target,
      keys: [e.down, e.up, e.alpha].filter((x): x is TensorRef => !!x).map((x) => x.info.name),
      delta: { kind: 'lowrank', up: e.up, down: e.down, transpose: false, rank, alpha, scale: alpha / rank },
    };
    checkOp(op, base.tensors.get(target)!);
    addOp(ops, op);
  }
  return { format: 'kohya', files: [file], ops };
}
