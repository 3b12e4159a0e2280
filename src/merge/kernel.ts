/**
 * The numeric kernel of the merge: dtype conversion and W' = round(fp32(W) + Δ) row by row.
 *
 * `createKernel` is self-contained on purpose (it references nothing outside its own body):
 * pool.ts runs its source text in worker threads (`new Worker(src, { eval: true })`), so the
 * bundle needs no extra entry point, and the main thread calls the very same code in-process.
 *
 * Maths, matching peft on torch's CPU (MKL) and CUDA builds bit for bit (docs/merge.md):
 *   acc_j   = fma(P[i,k], Q[k,j], acc_j)  in k order, one fp32 rounding per step (the product
 *                                        exact), which is what an FMA sgemm does;
 *   Δ_j     = fp32(acc_j × scale)         scale already rounded to fp32;
 *                                        embedding LoRA (roundDelta): Δ_j rounded to W's dtype;
 *   S_j     = fp32(fp32(W[i,j]) + Δ_j);
 *   W'[i,j] = round_to_nearest_even(S_j) in the output dtype (BF16, F16 or F32: one rounding).
 * DoRA rows: n = fp32(‖S‖₂), f = fp32(m_i / n), W'[i,j] = round(fp32(f × S_j)).
 */

/** Dtype codes shared by the kernel and its callers. */
export const DT_BF16 = 0;
export const DT_F16 = 1;
export const DT_F32 = 2;
export type DtypeCode = 0 | 1 | 2;

/** One block of rows of one tensor. Typed arrays may live on SharedArrayBuffers. */
export interface RowJob {
  /** Source bytes of the block: `rows × cols` elements of `srcDtype`, starting at byte 0 of an aligned view. */
  src: Uint8Array;
  srcDtype: DtypeCode;
  /** Output bytes of the block: `rows × cols` elements of `dstDtype`. */
  dst: Uint8Array;
  dstDtype: DtypeCode;
  rows: number;
  cols: number;
  /** Rank; 0 means no Δ (a pure dtype conversion). */
  r: number;
  /** Left factor, row-major [tensorRows × r]; the block's row i uses row `pRow0 + i`. */
  P: Float32Array | null;
  /** Right factor, row-major [r × cols]. */
  Q: Float32Array | null;
  /**
   * Names Q across threads: jobs with the same key have the same Q, so a thread keeps it as it
   * holds it (promoted to f64) from one block to the next. A worker gets a new array object with
   * each message; without a key, Q is known by that object.
   */
  qKey?: number;
  pRow0: number;
  /** fp32 scale applied to Σ P Q. */
  scale: number;
  /** DoRA magnitude per tensor row (indexed like P), or null. */
  mag: Float32Array | null;
  /** Δ_j rounded to the source dtype before the add (peft's embedding merge, plan.ts LowRankDelta.roundDelta). */
  roundDelta?: boolean;
}

export interface RowResult {
  /** Output elements that are NaN or ±Inf. */
  bad: number;
  /** Block-relative element index of the first of them, or -1. */
  firstBad: number;
}

export interface Kernel {
  /** Processes rows [start, end) of the block. */
  mergeRows(job: RowJob, start: number, end: number): RowResult;
  /** Decodes `n` elements of `dtype` to fp32. */
  decode(bytes: Uint8Array, dtype: DtypeCode): Float32Array;
  /** Encodes fp32 values to `dtype` with round-to-nearest-even. */
  encode(values: Float32Array, dtype: DtypeCode): Uint8Array;
  f32BitsToBf16(bits: number): number;
  f32BitsToF16(bits: number): number;
  f16BitsToF32(h: number): number;
}

/**
 * The version of the arithmetic docs/merge.md specifies (operation order, rounding), which a
 * stored recipe names. test/merge-golden.test.ts pins its bits; any change to them is a new
 * version, and a recipe of another version is never rebuilt with this one.
 */
export const MERGE_KERNEL = 'mstore-merge/1';

export interface KernelOptions {
  /** false: the plain JS loop instead of WebAssembly SIMD (the same bits; the golden tests run both). */
  simd?: boolean;
}

export function createKernel(options: KernelOptions = {}): Kernel {
  // fp16 → fp32 table (exact: every fp16 is an fp32).
  const F16 = new Float32Array(65536);
  {
    const u = new Uint32Array(F16.buffer);
    for (let h = 0; h < 65536; h++) {
      const sign = (h & 0x8000) << 16;
      const exp = (h >>> 10) & 0x1f;
      const man = h & 0x3ff;
      if (exp === 0x1f) u[h] = (sign | 0x7f800000 | (man << 13)) >>> 0;
      else if (exp !== 0) u[h] = (sign | ((exp + 112) << 23) | (man << 13)) >>> 0;
      else if (man === 0) u[h] = sign >>> 0;
      else F16[h] = (sign ? -1 : 1) * man * 2 ** -24;
    }
  }

  function f16BitsToF32(h: number): number {
    return F16[h & 0xffff];
  }

  /** fp32 bits → bf16 bits, round to nearest even; NaN stays a (quiet) NaN, overflow rounds to ±Inf. */
  function f32BitsToBf16(x: number): number {
    if ((x & 0x7fffffff) >>> 0 > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff;
    return ((x >>> 0) + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }

  const oneF32 = new Float32Array(1);
  const oneBits = new Uint32Array(oneF32.buffer);
  /** An fp32 value rounded (to nearest even) to `dtype` and back. */
  function roundTo(x: number, dtype: DtypeCode): number {
    // literal codes (DT_F32 = 2, DT_F16 = 1): this function body must not reference the module scope
    if (dtype === 2) return x;
    oneF32[0] = x;
    if (dtype === 1) return f16BitsToF32(f32BitsToF16(oneBits[0]));
    oneBits[0] = f32BitsToBf16(oneBits[0]) << 16;
    return oneF32[0];
  }

  /** fp32 bits → fp16 bits, round to nearest even, subnormals included; overflow → ±Inf. */
  function f32BitsToF16(x: number): number {
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let man = x & 0x7fffff;
    if (exp === 0xff) return sign | 0x7c00 | (man ? 0x200 | (man >>> 13) : 0);
    const e = exp - 112;
    if (e >= 0x1f) return sign | 0x7c00;
    if (e <= 0) {
      if (e < -10) return sign;
      man |= 0x800000;
      const shift = 14 - e;
      const half = 1 << (shift - 1);
      const rem = man & ((1 << shift) - 1);
      let h = man >>> shift;
      if (rem > half || (rem === half && (h & 1) !== 0)) h++;
      return sign | h;
    }
    let h = (e << 10) | (man >>> 13);
    const rem = man & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && (h & 1) !== 0)) h++;
    return sign | h;
  }

  /**
   * The hot loop, acc[0..cols) = fma(p_k, Q[k, 0..cols), acc) in k order, as a WebAssembly SIMD
   * function assembled here: 16 columns per step in eight f64x2 accumulators, then 4, then 1.
   * WebAssembly has no fused multiply-add, so each step works in f64, where the product of two
   * fp32 values is exact: it adds the product and rounds once to fp32 (demote, then promote back,
   * exactly): what an FMA sgemm (MKL, CUDA: the torch peft runs on) computes, and exactly what
   * the JS fallback below computes. Q is held promoted to f64 (wasmSetup), once per tensor, so a
   * step promotes nothing but its rounded sum. Signature: row(p, q64, acc, r, cols), byte
   * addresses; p and acc are fp32, q64 is Q as f64.
   */
  function assembleRow(): ArrayBuffer {
    const u = (n: number): number[] => {
      const b: number[] = [];
      do {
        let x = n & 0x7f;
        n >>>= 7;
        if (n) x |= 0x80;
        b.push(x);
      } while (n);
      return b;
    };
    const i32c = (n: number): number[] => {
      const b: number[] = [0x41];
      for (;;) {
        const x = n & 0x7f;
        n >>= 7;
        if ((n === 0 && (x & 0x40) === 0) || (n === -1 && (x & 0x40) !== 0)) return [...b, x];
        b.push(x | 0x80);
      }
    };
    const get = (i: number): number[] => [0x20, i];
    const set = (i: number): number[] => [0x21, i];
    const simd = (op: number, ...imm: number[]): number[] => [0xfd, ...u(op), ...imm];
    const load = (off: number): number[] => simd(0x00, 2, ...u(off));
    const store = (off: number): number[] => simd(0x0b, 2, ...u(off));
    const splat = simd(0x13);
    const fadd = simd(0xe4);
    const fmul = simd(0xe6);
    const F64_PROMOTE = 0xbb;
    const F32_DEMOTE = 0xb6;
    const F64_MUL = 0xa2;
    const F64_ADD = 0xa0;
    const F32_LOAD = [0x2a, 2, 0];
    const F64_LOAD = [0x2b, 3, 0];
    const F32_STORE = [0x38, 2, 0];
    const f64splat = simd(0x14);
    const f64add = simd(0xf0);
    const f64mul = simd(0xf2);
    const promoteLow = simd(0x5f);
    const demoteZero = simd(0x5e);
    /** Lanes 0 and 1 of the first vector, then lanes 0 and 1 of the second. */
    const joinLow = simd(0x0d, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
    const ADD = 0x6a;
    const GT_U = 0x4b;
    const GE_U = 0x4f;
    const SHL = 0x74;
    // params 0 p, 1 q64, 2 acc, 3 r, 4 cols; locals 5 j, 6 k, 7 qk (q64 address of column j, row k),
    // 8 stride (bytes of a q64 row), 9 x (f32, the scalar tail), 10 pd (p_k as f64x2), 11.. accumulators (f64x2)
    const J = 5, K = 6, QK = 7, STRIDE = 8, X = 9, PD = 10, A0 = 11;
    const addr = (base: number, idx: number, shift: number): number[] => [...get(base), ...get(idx), ...i32c(shift), SHL, ADD];
    /** p_k as f64 in both lanes. */
    const pk = (k: number): number[] => [...addr(0, k, 2), ...F32_LOAD, F64_PROMOTE, ...f64splat, ...set(PD)];
    /** a = fp32(a + p·q) for two lanes: the product exact in f64, the sum rounded once to fp32 (and held as f64). */
    const fmaStep = (a: number, qOff: number): number[] => [...get(a), ...get(PD), ...get(QK), ...simd(0x00, 3, ...u(qOff)), ...f64mul, ...f64add, ...demoteZero, ...promoteLow, ...set(a)];
    /** a = fp32(p·q): the first step (one rounding of the exact product). */
    const firstStep = (a: number, qOff: number): number[] => [...get(PD), ...get(QK), ...simd(0x00, 3, ...u(qOff)), ...f64mul, ...demoteZero, ...promoteLow, ...set(a)];
    /** Columns [j, j + w) while they fit, in w / 2 accumulators. */
    const width = (w: number): number[] => {
      const accs = w / 2;
      const first: number[] = [];
      const step: number[] = [];
      for (let a = 0; a < accs; a++) {
        first.push(...firstStep(A0 + a, a * 16));
        step.push(...fmaStep(A0 + a, a * 16));
      }
      // Two accumulators demoted and joined into one f32x4 per 16-byte store.
      const stores: number[] = [];
      for (let a = 0; a < accs; a += 2) stores.push(...addr(2, J, 2), ...get(A0 + a), ...demoteZero, ...get(A0 + a + 1), ...demoteZero, ...joinLow, ...store(a * 8));
      return [
        0x02, 0x40, 0x03, 0x40,
        ...get(J), ...i32c(w), ADD, ...get(4), GT_U, 0x0d, 1,
        ...addr(1, J, 3), ...set(QK),
        ...get(0), ...F32_LOAD, F64_PROMOTE, ...f64splat, ...set(PD),
        ...first,
        ...i32c(1), ...set(K),
        0x02, 0x40, 0x03, 0x40,
        ...get(K), ...get(3), GE_U, 0x0d, 1,
        ...get(QK), ...get(STRIDE), ADD, ...set(QK),
        ...pk(K),
        ...step,
        ...get(K), ...i32c(1), ADD, ...set(K),
        0x0c, 0, 0x0b, 0x0b,
        ...stores,
        ...get(J), ...i32c(w), ADD, ...set(J),
        0x0c, 0, 0x0b, 0x0b,
      ];
    };
    // The scalar tail, column by column: x = fp32(p_0·q); x = fp32(x + p_k·q) in k order.
    const tail = [
      0x02, 0x40, 0x03, 0x40,
      ...get(J), ...get(4), GE_U, 0x0d, 1,
      ...addr(1, J, 3), ...set(QK),
      ...get(0), ...F32_LOAD, F64_PROMOTE, ...get(QK), ...F64_LOAD, F64_MUL, F32_DEMOTE, ...set(X),
      ...i32c(1), ...set(K),
      0x02, 0x40, 0x03, 0x40,
      ...get(K), ...get(3), GE_U, 0x0d, 1,
      ...get(QK), ...get(STRIDE), ADD, ...set(QK),
      ...get(X), F64_PROMOTE, ...addr(0, K, 2), ...F32_LOAD, F64_PROMOTE, ...get(QK), ...F64_LOAD, F64_MUL, F64_ADD, F32_DEMOTE, ...set(X),
      ...get(K), ...i32c(1), ADD, ...set(K),
      0x0c, 0, 0x0b, 0x0b,
      ...addr(2, J, 2), ...get(X), ...F32_STORE,
      ...get(J), ...i32c(1), ADD, ...set(J),
      0x0c, 0, 0x0b, 0x0b,
    ];
    const body = [
      3, 4, 0x7f, 1, 0x7d, 9, 0x7b, // locals: 4 × i32 (5-8), 1 × f32 (9), 9 × v128 (10-18)
      ...get(4), ...i32c(3), SHL, ...set(STRIDE),
      ...i32c(0), ...set(J),
      ...width(16),
      ...width(4),
      ...tail,
      0x0b,
    ];
    // bf16(src, acc, dst, groups, scale) -> any non-finite: for 8 elements per group,
    // dst = rne_bf16(fp32(bf16→fp32(src) + fp32(acc × scale))), as storeRow does one by one.
    // params 0 src, 1 acc, 2 dst, 3 groups, 4 scale (f32); locals 5 g (i32), 6 flag, 7 sc, 8 lo, 9 hi, 10 w (v128)
    const SHR_U = simd(0xad);
    const I32ADD = simd(0xae);
    const I32SPLAT = simd(0x11);
    const AND = simd(0x4e);
    const OR = simd(0x50);
    const round = (l: number): number[] => [
      ...get(l), ...i32c(16), ...SHR_U, ...i32c(0x40), ...I32SPLAT, ...OR,
      ...get(l), ...get(l), ...i32c(16), ...SHR_U, ...i32c(1), ...I32SPLAT, ...AND, ...i32c(0x7fff), ...I32SPLAT, ...I32ADD, ...I32ADD, ...i32c(16), ...SHR_U,
      ...get(l), ...get(l), ...simd(0x42),
      ...simd(0x52),
      ...set(l),
    ];
    const half = (l: number, extend: number, accOff: number): number[] => [
      ...get(10), ...simd(extend), ...i32c(16), ...simd(0xab),
      ...get(1), ...get(5), ...i32c(5), SHL, ADD, ...load(accOff), ...get(7), ...fmul, ...fadd,
      ...set(l),
      ...round(l),
    ];
    const bf16Body = [
      2, 1, 0x7f, 5, 0x7b,
      ...get(4), ...splat, ...set(7),
      ...i32c(0), ...I32SPLAT, ...set(6),
      ...i32c(0), ...set(5),
      0x02, 0x40, 0x03, 0x40,
      ...get(5), ...get(3), GE_U, 0x0d, 1,
      ...get(0), ...get(5), ...i32c(4), SHL, ADD, ...load(0), ...set(10),
      ...half(8, 0xa9, 0),
      ...half(9, 0xaa, 16),
      ...get(8), ...get(9), ...simd(0x86), ...set(10),
      ...get(2), ...get(5), ...i32c(4), SHL, ADD, ...get(10), ...store(0),
      ...get(6), ...get(10), ...i32c(0x7f80), ...simd(0x10), ...AND, ...i32c(0x7f80), ...simd(0x10), ...simd(0x2d), ...OR, ...set(6),
      ...get(5), ...i32c(1), ADD, ...set(5),
      0x0c, 0, 0x0b, 0x0b,
      ...get(6), ...simd(0x53),
      0x0b,
    ];
    const section = (id: number, bytes: number[]): number[] => [id, ...u(bytes.length), ...bytes];
    const name = (s: string): number[] => [...u(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];
    return new Uint8Array([
      0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
      ...section(1, [2, 0x60, 5, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0, 0x60, 5, 0x7f, 0x7f, 0x7f, 0x7f, 0x7d, 1, 0x7f]),
      ...section(2, [1, ...name('m'), ...name('mem'), 0x02, 0x00, 1]),
      ...section(3, [2, 0, 1]),
      ...section(7, [2, ...name('row'), 0x00, 0, ...name('bf16'), 0x00, 1]),
      ...section(10, [2, ...u(body.length), ...body, ...u(bf16Body.length), ...bf16Body]),
    ]).buffer;
  }

  let wasmRow: ((p: number, q: number, acc: number, r: number, cols: number) => void) | undefined;
  let wasmBf16: ((src: number, acc: number, dst: number, groups: number, scale: number) => number) | undefined;
  let memory: WebAssembly.Memory | undefined;
  if (options.simd !== false && typeof WebAssembly === 'object') {
    try {
      memory = new WebAssembly.Memory({ initial: 1 });
      const inst = new WebAssembly.Instance(new WebAssembly.Module(assembleRow()), { m: { mem: memory } });
      wasmRow = inst.exports.row as (p: number, q: number, acc: number, r: number, cols: number) => void;
      wasmBf16 = inst.exports.bf16 as (src: number, acc: number, dst: number, groups: number, scale: number) => number;
    } catch {
      wasmRow = undefined;
      wasmBf16 = undefined;
    }
  }
  // wasm memory layout: [0, pBytes) the P row, Q [r × cols] as f64, acc [cols], a source row and an output row (bf16).
  let wasmQ: Float32Array | null = null;
  let wasmQKey: number | undefined;
  let wasmQOff = 0;
  let wasmAccOff = 0;
  let wasmSrcOff = 0;
  let wasmDstOff = 0;
  let wasmP = new Float32Array(0);
  let wasmSrc = new Uint8Array(0);
  let wasmSrc16 = new Uint16Array(0);
  let wasmDst = new Uint8Array(0);
  let wasmDst16 = new Uint16Array(0);
  function wasmSetup(P: Float32Array, Q: Float32Array, r: number, cols: number, qKey: number | undefined): void {
    const al = (n: number): number => Math.ceil(n / 16) * 16;
    const pBytes = al(r * 4);
    const need = pBytes + al(r * cols * 8) + al(cols * 4) + 2 * al(cols * 2) + 64;
    const have = memory!.buffer.byteLength;
    if (need > have) memory!.grow(Math.ceil((need - have) / 65536));
    wasmQOff = pBytes;
    wasmAccOff = wasmQOff + al(r * cols * 8);
    wasmSrcOff = wasmAccOff + al(cols * 4);
    wasmDstOff = wasmSrcOff + al(cols * 2);
    // Promoted once per tensor (every fp32 is an f64 exactly), not once per row and step.
    if (qKey !== undefined ? qKey !== wasmQKey : wasmQ !== Q) new Float64Array(memory!.buffer, wasmQOff, r * cols).set(Q);
    wasmQ = Q;
    wasmQKey = qKey;
    wasmP = new Float32Array(memory!.buffer, 0, r);
    acc = new Float32Array(memory!.buffer, wasmAccOff, cols);
    wasmSrc = new Uint8Array(memory!.buffer, wasmSrcOff, cols * 2);
    wasmSrc16 = new Uint16Array(memory!.buffer, wasmSrcOff, cols);
    wasmDst = new Uint8Array(memory!.buffer, wasmDstOff, cols * 2);
    wasmDst16 = new Uint16Array(memory!.buffer, wasmDstOff, cols);
  }

  let acc = new Float32Array(0);
  let wrow = new Float32Array(0);
  let wrowBits = new Int32Array(0);
  function ensure(cols: number): void {
    if (wrow.length >= cols) return;
    if (!wasmRow) acc = new Float32Array(cols);
    wrow = new Float32Array(cols);
    wrowBits = new Int32Array(wrow.buffer);
  }

  /** Elements [off, off+n) of a block as fp32, into wrow[0..n). */
  function loadRow(src: Uint8Array, dtype: DtypeCode, off: number, n: number): void {
    if (dtype === 0) {
      const s = new Uint16Array(src.buffer, src.byteOffset + off * 2, n);
      for (let j = 0; j < n; j++) wrowBits[j] = s[j] << 16;
    } else if (dtype === 1) {
      const s = new Uint16Array(src.buffer, src.byteOffset + off * 2, n);
      for (let j = 0; j < n; j++) wrow[j] = F16[s[j]];
    } else {
      wrow.set(new Float32Array(src.buffer, src.byteOffset + off * 4, n));
    }
  }

  /** wrow[0..n) → dst elements [off, off+n), rounded; counts non-finite outputs in rowBad, returns the first one's index or -1. */
  let rowBad = 0;
  function storeRow(dst: Uint8Array, dtype: DtypeCode, off: number, n: number): number {
    let first = -1;
    let badCount = 0;
    if (dtype === 0) {
      const d = new Uint16Array(dst.buffer, dst.byteOffset + off * 2, n);
      for (let j = 0; j < n; j++) {
        const x = wrowBits[j];
        // int32 arithmetic: the wrapped sum has the bits of the unsigned one (no NaN gets here).
        const h = (x & 0x7fffffff) > 0x7f800000 ? ((x >>> 16) | 0x40) & 0xffff : ((x + 0x7fff + ((x >>> 16) & 1)) | 0) >>> 16;
        d[j] = h;
        if ((h & 0x7f80) === 0x7f80) {
          if (first < 0) first = j;
          badCount++;
        }
      }
    } else if (dtype === 1) {
      const d = new Uint16Array(dst.buffer, dst.byteOffset + off * 2, n);
      for (let j = 0; j < n; j++) {
        const h = f32BitsToF16(wrowBits[j]);
        d[j] = h;
        if ((h & 0x7c00) === 0x7c00) {
          if (first < 0) first = j;
          badCount++;
        }
      }
    } else {
      new Float32Array(dst.buffer, dst.byteOffset + off * 4, n).set(wrow.subarray(0, n));
      for (let j = 0; j < n; j++) {
        if ((wrowBits[j] & 0x7f800000) === 0x7f800000) {
          if (first < 0) first = j;
          badCount++;
        }
      }
    }
    rowBad = badCount;
    return first;
  }

  /** One BF16 → BF16 row in WebAssembly: Σ into acc, then decode + Δ + round 8 elements at a time; the tail in JS. */
  function bf16Row(job: RowJob, i: number, off: number, scale: number): number {
    const { src, dst, cols, r, P, pRow0 } = job;
    const pr = (pRow0 + i) * r;
    // Element by element, not through a subarray: a row is short work, an allocation per row shows.
    for (let k = 0; k < r; k++) wasmP[k] = P![pr + k];
    wasmRow!(0, wasmQOff, wasmAccOff, r, cols);
    wasmSrc.set(src.subarray(off * 2, off * 2 + cols * 2));
    const groups = cols >>> 3;
    const flagged = wasmBf16!(wasmSrcOff, wasmAccOff, wasmDstOff, groups, scale) !== 0;
    const s16 = wasmSrc16;
    for (let j = groups * 8; j < cols; j++) {
      wrowBits[0] = s16[j] << 16;
      wrow[0] = wrow[0] + Math.fround(acc[j] * scale);
      const x = wrowBits[0];
      wasmDst16[j] = (x & 0x7fffffff) > 0x7f800000 ? ((x >>> 16) | 0x40) & 0xffff : ((x + 0x7fff + ((x >>> 16) & 1)) | 0) >>> 16;
    }
    dst.set(wasmDst, off * 2);
    let first = -1;
    let count = 0;
    for (let j = flagged ? 0 : groups * 8; j < cols; j++) {
      if ((wasmDst16[j] & 0x7f80) === 0x7f80) {
        if (first < 0) first = j;
        count++;
      }
    }
    rowBad = count;
    return first;
  }

  function mergeRows(job: RowJob, start: number, end: number): RowResult {
    const { src, srcDtype, dst, dstDtype, cols, r, P, Q, pRow0, mag } = job;
    const scale = Math.fround(job.scale);
    ensure(cols);
    if (wasmRow && r > 0 && P && Q) wasmSetup(P, Q, r, cols, job.qKey);
    let bad = 0;
    let firstBad = -1;
    const fastBf16 = !!wasmBf16 && srcDtype === 0 && dstDtype === 0 && !mag && !job.roundDelta && r > 0 && !!P && !!Q;
    for (let i = start; i < end; i++) {
      const off = i * cols;
      if (fastBf16) {
        const fb = bf16Row(job, i, off, scale);
        if (fb >= 0) {
          if (firstBad < 0) firstBad = off + fb;
          bad += rowBad;
        }
        continue;
      }
      loadRow(src, srcDtype, off, cols);
      if (r > 0 && P && Q) {
        const pr = (pRow0 + i) * r;
        if (wasmRow) {
          wasmP.set(P.subarray(pr, pr + r));
          wasmRow(0, wasmQOff, wasmAccOff, r, cols);
        } else {
          // acc = fma(p_k, Q[k, :], acc) in k order: the product of two fp32 values is exact in a
          // double, and the Float32Array store rounds each step's sum once, as an FMA does.
          const p0 = P[pr];
          for (let j = 0; j < cols; j++) acc[j] = p0 * Q[j];
          for (let k = 1; k < r; k++) {
            const p = P[pr + k];
            const q = k * cols;
            for (let j = 0; j < cols; j++) acc[j] = acc[j] + p * Q[q + j];
          }
        }
        if (job.roundDelta) for (let j = 0; j < cols; j++) wrow[j] = wrow[j] + roundTo(Math.fround(acc[j] * scale), srcDtype);
        else for (let j = 0; j < cols; j++) wrow[j] = wrow[j] + Math.fround(acc[j] * scale);
        if (mag) {
          let ss = 0;
          for (let j = 0; j < cols; j++) ss += wrow[j] * wrow[j];
          const norm = Math.fround(Math.sqrt(ss));
          const f = Math.fround(mag[pRow0 + i] / norm);
          for (let j = 0; j < cols; j++) wrow[j] = f * wrow[j];
        }
      }
      const fb = storeRow(dst, dstDtype, off, cols);
      if (fb >= 0) {
        if (firstBad < 0) firstBad = off + fb;
        bad += rowBad;
      }
    }
    return { bad, firstBad };
  }

  function decode(bytes: Uint8Array, dtype: DtypeCode): Float32Array {
    const size = dtype === 2 ? 4 : 2;
    const n = Math.floor(bytes.length / size);
    const aligned = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
    const outv = new Float32Array(n);
    if (dtype === 2) outv.set(new Float32Array(aligned.buffer, aligned.byteOffset, n));
    else {
      const s = new Uint16Array(aligned.buffer, aligned.byteOffset, n);
      if (dtype === 0) {
        const u = new Uint32Array(outv.buffer);
        for (let j = 0; j < n; j++) u[j] = s[j] << 16;
      } else for (let j = 0; j < n; j++) outv[j] = F16[s[j]];
    }
    return outv;
  }

  function encode(values: Float32Array, dtype: DtypeCode): Uint8Array {
    const n = values.length;
    if (dtype === 2) return new Uint8Array(Float32Array.from(values).buffer);
    const bits = new Uint32Array(values.buffer, values.byteOffset, n);
    const d = new Uint16Array(n);
    for (let j = 0; j < n; j++) d[j] = dtype === 0 ? f32BitsToBf16(bits[j]) : f32BitsToF16(bits[j]);
    return new Uint8Array(d.buffer);
  }

  return { mergeRows, decode, encode, f32BitsToBf16, f32BitsToF16, f16BitsToF32 };
}
