/**
 * The shared-memory slots content streams through (content.ts, content-reader.ts): a few
 * fixed buffers, each reused only after everything using it settled, so memory does not grow
 * with file size and the hash worker reads the same memory this thread filled.
 */
export const SLOT_BYTES = 16 * 1024 * 1024;
const SLOT_COUNT = 4;

export class Slot {
  sab: SharedArrayBuffer;
  buf: Buffer;
  private pending: Promise<unknown>[] = [];
  constructor(bytes: number) {
    this.sab = new SharedArrayBuffer(bytes);
    this.buf = Buffer.from(this.sab);
  }
  /** Holds at least `bytes` (only while nothing uses it: after drain, or new). */
  fit(bytes: number): void {
    if (this.buf.length >= bytes) return;
    this.sab = new SharedArrayBuffer(slotSize(bytes));
    this.buf = Buffer.from(this.sab);
  }
  track(p: Promise<unknown>): void {
    p.catch(() => undefined); // rejections surface through drain(), not as unhandled
    this.pending.push(p);
  }
  async drain(): Promise<void> {
    const p = this.pending;
    this.pending = [];
    await Promise.all(p);
  }
}

/** A slot's size for `bytes`: a power of two from 64 KiB, SLOT_BYTES for anything from 8 MiB up. */
export function slotSize(bytes: number): number {
  if (bytes > SLOT_BYTES / 2) return Math.max(bytes, SLOT_BYTES);
  let n = 64 * 1024;
  while (n < bytes) n *= 2;
  return n;
}

/**
 * Round-robin pool: a slot is reused only after everything using it has settled. Slots are
 * allocated on first use, no larger than asked (a power of two up to SLOT_BYTES), and grown
 * when reused for more: 64 MiB of shared memory would cost a no-op commit a garbage
 * collection (V8 counts it as external memory pressure), and zeroing 16 MiB for each small
 * file a checkout reads cost more than reading it.
 */
export class SlotPool {
  private readonly slots: Slot[] = [];
  private i = 0;
  /** A slot holding at least `bytes`, which nothing else uses until it is acquired again. */
  async acquire(bytes: number = SLOT_BYTES): Promise<Slot> {
    if (this.slots.length < SLOT_COUNT) {
      const fresh = new Slot(slotSize(bytes));
      this.slots.push(fresh);
      return fresh;
    }
    const s = this.slots[this.i];
    this.i = (this.i + 1) % this.slots.length;
    await s.drain();
    s.fit(bytes);
    return s;
  }
  async drainAll(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.drain()));
  }
}

