/**
 * Reusable buffers for object data in transit (push and pull receive ~256 chunks of 4 MiB
 * per GiB). A fresh 4 MiB buffer per chunk cost the receiving process ~0.7 s of garbage
 * collection per GiB (V8 collects to free external memory; the kernel maps and zeroes the
 * pages again); buffers handed back with release() are handed out again instead.
 * They are backed by SharedArrayBuffers, so the hash worker reads them without a copy.
 */
export class BufferPool {
  private readonly free = new Map<number, Buffer[]>();
  private readonly idle = new Set<Buffer>();
  private readonly mine = new WeakSet<Buffer>();
  private keptBytes = 0;

  /** Keeps at most `maxKeptBytes` of released buffers for reuse; the rest go to the GC. */
  constructor(private readonly maxKeptBytes = 128 * 1024 * 1024) {}

  /** A buffer of exactly `n` bytes (contents undefined), shared-memory backed. */
  get(n: number): Buffer {
    const b = this.free.get(n)?.pop();
    if (b) {
      this.idle.delete(b);
      this.keptBytes -= n;
      return b;
    }
    const fresh = Buffer.from(new SharedArrayBuffer(n));
    this.mine.add(fresh);
    return fresh;
  }

  /**
   * Hands a buffer back once nothing uses it any more (writes and hashes settled). Buffers
   * this pool did not make, and a second release of the same buffer, are ignored.
   */
  release(b: Buffer): void {
    if (!this.mine.has(b) || this.idle.has(b) || this.keptBytes + b.length > this.maxKeptBytes) return;
    let list = this.free.get(b.length);
    if (!list) this.free.set(b.length, (list = []));
    list.push(b);
    this.idle.add(b);
    this.keptBytes += b.length;
  }
}
