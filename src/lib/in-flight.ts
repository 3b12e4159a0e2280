/**
 * Bounds the bytes of asynchronous work started but not settled (pack writes, worker hashes
 * of received chunks), so a receiver keeps the disk and the hash worker busy without waiting
 * for each write, and without holding more than `maxBytes` of data in memory.
 */
export class InFlight {
  private queue: { done: Promise<void>; bytes: number }[] = [];
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  /**
   * Tracks work on `bytes` bytes; resolves once the total in flight is within the bound.
   * A rejection is not reported here: the work's owner reports it (PackWriter.finish()
   * awaits its writes), so it is only waited for.
   */
  async add(work: Promise<unknown>, bytes: number): Promise<void> {
    this.queue.push({ done: work.then(() => undefined, () => undefined), bytes });
    this.bytes += bytes;
    while (this.bytes > this.maxBytes) {
      const oldest = this.queue.shift()!;
      await oldest.done;
      this.bytes -= oldest.bytes;
    }
  }

  /** Waits for everything tracked. */
  async drain(): Promise<void> {
    const q = this.queue;
    this.queue = [];
    this.bytes = 0;
    for (const w of q) await w.done;
  }
}
