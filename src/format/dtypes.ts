/**
 * Decoding safetensors tensor elements
 * into numbers, a window at a time, for statistics over tensors (dtypes: docs/format.md §4.2).
 * Pure: bytes in, numbers out.
 */
/**
 * A window of one tensor's elements as numbers: 16-bit floats as their bit patterns and a
 * 65536-entry table (decoded in the loop), anything else decoded into `decode`'s output.
 */
export interface Decoder {
  bytes: number;
  /** F16 / BF16: value of each bit pattern. */
  table?: Float64Array;
  /** Decodes `count` elements of `src` from element `from` into `dst[0..count)`. */
  prepare(src: Buffer): (from: number, count: number, dst: Float64Array) => void;
}

const LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** `src` with a byte offset that is a multiple of `bytes` (copied when it is not). */
function aligned(src: Buffer, bytes: number): Buffer {
  if (src.byteOffset % bytes === 0) return src;
  const copy = Buffer.alloc(src.length);
  src.copy(copy);
  return copy;
}

/** The window's elements as a Uint16Array (little-endian machines) or undefined. */
export function u16view(src: Buffer): Uint16Array | undefined {
  if (!LE) return undefined;
  const a = aligned(src, 2);
  return new Uint16Array(a.buffer, a.byteOffset, a.length >>> 1);
}

type ArrayMaker = (ab: ArrayBufferLike, off: number, len: number) => ArrayLike<number>;

/** Plain numeric types: a typed-array view on little-endian machines, a DataView elsewhere. */
function typed(bytes: number, make: ArrayMaker, get: (dv: DataView, byteOffset: number) => number): Decoder {
  return {
    bytes,
    prepare(src) {
      if (!LE) {
        const dv = new DataView(src.buffer, src.byteOffset, src.length);
        return (from, count, dst) => {
          for (let i = 0; i < count; i++) dst[i] = get(dv, (from + i) * bytes);
        };
      }
      const a = aligned(src, bytes);
      const arr = make(a.buffer, a.byteOffset, Math.floor(a.length / bytes));
      return (from, count, dst) => {
        for (let i = 0; i < count; i++) dst[i] = arr[from + i];
      };
    },
  };
}

/** 16-bit floats through a 65536-entry table. */
function table16(table: Float64Array): Decoder {
  return {
    bytes: 2,
    table,
    prepare(src) {
      const arr = u16view(src);
      return (from, count, dst) => {
        if (arr) for (let i = 0; i < count; i++) dst[i] = table[arr[from + i]];
        else for (let i = 0; i < count; i++) dst[i] = table[src.readUInt16LE((from + i) * 2)];
      };
    },
  };
}

/** 64-bit integers as numbers (beyond 2^53 they lose precision; fine for norms). */
function int64(signed: boolean): Decoder {
  return {
    bytes: 8,
    prepare(src) {
      return (from, count, dst) => {
        for (let i = 0; i < count; i++) {
          const o = (from + i) * 8;
          dst[i] = Number(signed ? src.readBigInt64LE(o) : src.readBigUInt64LE(o));
        }
      };
    },
  };
}

/** IEEE 754 binary16. */
function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

const HALF = (() => {
  const t = new Float64Array(65536);
  for (let i = 0; i < 65536; i++) t[i] = halfToFloat(i);
  return t;
})();

/** BF16 is the upper 16 bits of an f32. */
const BFLOAT = (() => {
  const t = new Float64Array(65536);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < 65536; i++) {
    u[0] = i << 16;
    t[i] = f[0];
  }
  return t;
})();

export const DECODERS: Record<string, Decoder> = {
  F64: typed(8, (ab, o, l) => new Float64Array(ab, o, l), (dv, i) => dv.getFloat64(i, true)),
  F32: typed(4, (ab, o, l) => new Float32Array(ab, o, l), (dv, i) => dv.getFloat32(i, true)),
  F16: table16(HALF),
  BF16: table16(BFLOAT),
  I32: typed(4, (ab, o, l) => new Int32Array(ab, o, l), (dv, i) => dv.getInt32(i, true)),
  U32: typed(4, (ab, o, l) => new Uint32Array(ab, o, l), (dv, i) => dv.getUint32(i, true)),
  I16: typed(2, (ab, o, l) => new Int16Array(ab, o, l), (dv, i) => dv.getInt16(i, true)),
  U16: typed(2, (ab, o, l) => new Uint16Array(ab, o, l), (dv, i) => dv.getUint16(i, true)),
  I8: typed(1, (ab, o, l) => new Int8Array(ab, o, l), (dv, i) => dv.getInt8(i)),
  U8: typed(1, (ab, o, l) => new Uint8Array(ab, o, l), (dv, i) => dv.getUint8(i)),
  BOOL: typed(1, (ab, o, l) => new Uint8Array(ab, o, l), (dv, i) => dv.getUint8(i)),
  I64: int64(true),
  U64: int64(false),
};
