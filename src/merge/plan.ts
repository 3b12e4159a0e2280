/**
 * What the merge does to each base tensor, decided (and shape-checked) before any output is
 * written: the adapter parsers (peft.ts, kohya.ts) produce a plan, merge.ts executes it.
 */
import { MstoreError } from '../lib/errors.js';
import { elements, shapeText, type TensorRef } from './tensors.js';

/** Δ = scale × (up @ down), reshaped to W; transposed (Δ = scale × (up @ down)ᵀ) for fan_in_fan_out and embeddings. */
export interface LowRankDelta {
  kind: 'lowrank';
  /** lora_B / lora_embedding_B / lora_up: [out, r] (conv: [out, r, 1, 1]). */
  up: TensorRef;
  /** lora_A / lora_embedding_A / lora_down: [r, in] (conv: [r, in, kh, kw]). */
  down: TensorRef;
  transpose: boolean;
  rank: number;
  alpha: number;
  /** alpha / r (or alpha / √r); applied in fp32. */
  scale: number;
  /** DoRA magnitude vector, one value per output row. */
  magnitude?: TensorRef;
  /**
   * Δ is rounded to the weight's dtype before it is added. peft's Embedding.merge does
   * `weight += Δ.to(weight.dtype)`, where its Linear adds the fp32 Δ: two roundings, not one.
   */
  roundDelta?: boolean;
}

/** Δ = scale × v, elementwise (PEFT lora_bias: bias += lora_B.bias × scaling). */
export interface VectorDelta {
  kind: 'vector';
  vector: TensorRef;
  scale: number;
}

export interface TensorOp {
  /** Base tensor name. */
  target: string;
  /** Adapter keys behind this op, for messages and the report. */
  keys: string[];
  /** Data to start from instead of the base tensor (modules_to_save, saved embedding layers). */
  replace?: TensorRef;
  delta?: LowRankDelta | VectorDelta;
}

export interface AdapterPlan {
  format: 'peft' | 'kohya';
  /** Adapter weight file(s). */
  files: string[];
  ops: Map<string, TensorOp>;
  /** adapter_config.json as read (PEFT). */
  config?: Record<string, unknown>;
}

export function addOp(ops: Map<string, TensorOp>, op: TensorOp): void {
  const seen = ops.get(op.target);
  if (!seen) {
    ops.set(op.target, op);
    return;
  }
  // A saved base layer (replace) and a LoRA delta on the same tensor compose: replace, then add.
  if ((seen.replace && !seen.delta && op.delta && !op.replace) || (seen.delta && !seen.replace && op.replace && !op.delta)) {
    ops.set(op.target, { target: op.target, keys: [...seen.keys, ...op.keys], replace: seen.replace ?? op.replace, delta: seen.delta ?? op.delta });
    return;
  }
  throw new MstoreError('EBADINPUT', `adapter tensors ${seen.keys.join(', ')} and ${op.keys.join(', ')} both target ${op.target}`);
}

/** W as a matrix: rows = first dimension, cols = the rest. */
export function matrixShape(shape: number[]): { rows: number; cols: number } {
  const rows = shape.length ? shape[0] : 1;
  return { rows, cols: rows ? elements(shape) / rows : 0 };
}

const allOnes = (dims: number[]): boolean => dims.every((d) => d === 1);

/** Throws a one-line error naming the tensor when the op cannot apply to `base`. */
export function checkOp(op: TensorOp, base: TensorRef): void {
  const w = base.info.shape;
  const fail = (what: string): never => {
    throw new MstoreError('EBADINPUT', `shape mismatch for ${op.target}: base ${shapeText(w)}, ${what}`);
  };
  if (op.replace && shapeText(op.replace.info.shape) !== shapeText(w)) fail(`adapter ${op.replace.info.name} ${shapeText(op.replace.info.shape)}`);
  const d = op.delta;
  if (!d) return;
  const { rows, cols } = matrixShape(w);
  if (d.kind === 'vector') {
    if (elements(d.vector.info.shape) !== elements(w)) fail(`adapter ${d.vector.info.name} ${shapeText(d.vector.info.shape)}`);
    return;
  }
  const up = d.up.info.shape;
  const down = d.down.info.shape;
  const desc = `adapter ${d.up.info.name} ${shapeText(up)} @ ${d.down.info.name} ${shapeText(down)}${d.transpose ? ', transposed' : ''}`;
  if (up.length < 2 || down.length < 2 || up[1] !== d.rank || down[0] !== d.rank) fail(`${desc} (rank ${d.rank})`);
  if (d.transpose) {
    if (w.length !== 2 || up.length !== 2 || down.length !== 2 || down[1] !== rows || up[0] !== cols) fail(desc);
  } else {
    if (up[0] !== rows || !allOnes(up.slice(2))) fail(desc);
    if (elements(down) / d.rank !== cols) fail(desc);
    // conv: the kernel dims must agree; a 2-D factor only fits a 1×1 kernel (and the reverse).
    if (w.length > 2 && down.length > 2 && shapeText(down.slice(1)) !== shapeText(w.slice(1))) fail(desc);
    if (w.length > 2 && down.length === 2 && !allOnes(w.slice(2))) fail(desc);
    if (w.length === 2 && down.length > 2 && !allOnes(down.slice(2))) fail(desc);
  }
  if (d.magnitude && elements(d.magnitude.info.shape) !== rows) fail(`DoRA magnitude ${d.magnitude.info.name} ${shapeText(d.magnitude.info.shape)}`);
}
