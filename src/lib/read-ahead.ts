/** A stream read-ahead within a byte bound (readAhead). No domain knowledge: `size` says what an item weighs. */

/** Bytes a stream may run ahead of its consumer: what the HTTP client and server give readAhead. */
export const READ_AHEAD_BYTES = 32 * 1024 * 1024;

/**
 * Runs `source` ahead of its consumer, holding up to `maxBytes` of what it produced: the
 * producer's waits (disk reads, network data, hashing) overlap with the consumer's (pack
 * writes, socket writes) instead of alternating with them. Order and errors are kept. When the
 * consumer stops early, `abort` (if given) unblocks a producer waiting on I/O, and the source
 * is closed before this generator returns.
 */
export async function* readAhead<T>(source: AsyncIterable<T>, size: (x: T) => number, maxBytes: number, abort?: () => void): AsyncGenerator<T> {
  const it = source[Symbol.asyncIterator]();
  const queue: T[] = [];
  let queued = 0;
  let ended = false;
  let stopped = false;
  let failure: { e: unknown } | undefined;
  let wakeConsumer: (() => void) | undefined;
  let wakeProducer: (() => void) | undefined;
  const nudge = (w: (() => void) | undefined): undefined => {
    w?.();
    return undefined;
  };
  const pump = (async (): Promise<void> => {
    try {
      while (!stopped) {
        if (queued >= maxBytes) {
          await new Promise<void>((r) => (wakeProducer = r));
          continue;
        }
        const r = await it.next();
        if (r.done) {
          ended = true;
          break;
        }
        queue.push(r.value);
        queued += size(r.value);
        wakeConsumer = nudge(wakeConsumer);
      }
    } catch (e) {
      failure = { e };
    } finally {
      ended = true;
      wakeConsumer = nudge(wakeConsumer);
    }
  })();
  try {
    for (;;) {
      if (queue.length) {
        const x = queue.shift() as T;
        queued -= size(x);
        wakeProducer = nudge(wakeProducer);
        yield x;
      } else if (failure) throw failure.e;
      else if (ended) return;
      else await new Promise<void>((r) => (wakeConsumer = r));
    }
  } finally {
    stopped = true;
    wakeProducer = nudge(wakeProducer);
    if (!ended) abort?.();
    await pump;
    await it.return?.();
  }
}
