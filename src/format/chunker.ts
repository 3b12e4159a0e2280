/**
 * Chunkers decide where chunks end. Both are streaming: `next` gets the unconsumed
 * bytes [off, end) of a buffer and returns the length of the next chunk, or 0 when it
 * needs more data. With `eof` set it always returns > 0 while bytes remain.
 */
import { createHash } from 'node:crypto';

export interface Chunker {
  next(buf: Uint8Array, off: number, end: number, eof: boolean): number;
}

/** Cuts at precomputed absolute offsets (safetensors plan). */
export class PlannedChunker implements Chunker {
  private pos = 0;
  private i = 0;
  constructor(private readonly cuts: number[]) {}
  next(_buf: Uint8Array, off: number, end: number, eof: boolean): number {
    const avail = end - off;
    if (avail === 0) return 0;
    const cut = this.i < this.cuts.length ? this.cuts[this.i] : Infinity;
    const want = cut - this.pos;
    if (want <= avail) {
      this.i++;
      this.pos = cut;
      return want;
    }
    if (eof) {
      this.pos += avail;
      return avail;
    }
    return 0;
  }
}

export interface CdcParams {
  min: number;
  avg: number;
  max: number;
}

/**
 * The gear table: GEAR[i] = first 4 bytes (big-endian) of sha256("mstore-gear-" + i).
 * Derived, not random, so that any reader of docs/format.md can rebuild it.
 */
const GEAR: Uint32Array = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) t[i] = createHash('sha256').update(`mstore-gear-${i}`).digest().readUInt32BE(0);
  return t;
})();

/** Mask with the top `bits` bits of a u32 set: high bits of a left-shifting gear hash see the last 32 bytes. */
function topMask(bits: number): number {
  return bits <= 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
}

/**
 * FastCDC (Xia et al. 2016) with normalized chunking, level 2: below `avg` a cut needs
 * log2(avg)+2 zero bits, above it log2(avg)-2; no cut before `min`, forced cut at `max`.
 */
export class FastCdcChunker implements Chunker {
  private readonly maskS: number;
  private readonly maskL: number;
  constructor(private readonly p: CdcParams) {
    const bits = Math.round(Math.log2(p.avg));
    this.maskS = topMask(bits + 2);
    this.maskL = topMask(bits - 2);
  }
  next(buf: Uint8Array, off: number, end: number, eof: boolean): number {
    const n = end - off;
    if (n === 0) return 0;
    const { min, avg, max } = this.p;
    if (n <= min) return eof ? n : 0;
    const limit = Math.min(n, max);
    const normal = Math.min(limit, avg);
    const maskS = this.maskS;
    const maskL = this.maskL;
    let h = 0;
    let i = min;
    for (; i < normal; i++) {
      h = ((h << 1) + GEAR[buf[off + i]]) >>> 0;
      if ((h & maskS) === 0) return i + 1;
    }
    for (; i < limit; i++) {
      h = ((h << 1) + GEAR[buf[off + i]]) >>> 0;
      if ((h & maskL) === 0) return i + 1;
    }
    if (limit === max) return max;
    return eof ? n : 0;
  }
}
