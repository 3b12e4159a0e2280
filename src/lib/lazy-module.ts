/**
 * A module loaded at its first use instead of when the code that needs it is imported, for
 * synchronous callers that cannot `await import()`. Every command loads the store's code; a
 * `log` that never starts a hash worker or draws a progress bar should not pay for
 * worker_threads or cli-progress (about 15 ms of a 50 ms budget at start-up, issue 15).
 */
import { createRequire } from 'node:module';

const load = createRequire(import.meta.url);

export function lazyModule<T>(name: string): () => T {
  let loaded: T | undefined;
  return () => (loaded ??= load(name) as T);
}
