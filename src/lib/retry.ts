/**
 * Retrying an operation that may fail for a passing reason (a connection reset, a 503, a lost
 * compare-and-swap race): the one loop and backoff every retrying caller uses. The caller's
 * policy says how many attempts, how long to wait, which failures are worth another attempt,
 * what to throw when the attempts are used up, and how to settle a failure whose effect is
 * unknown (the request may have been applied). No domain knowledge: the errors are the caller's.
 */

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface Backoff {
  /** The wait after the first failed attempt; doubled after each further one. */
  firstMs: number;
  /** The most the doubled wait may grow to (default: no cap). */
  maxMs?: number;
  /** Wait a random time in [w/2, 3w/2) instead of exactly w, so that racing clients spread out. */
  jitter?: boolean;
}

/** The wait after failed attempt `attempt` (from 1); `random` in [0, 1) only matters with jitter. */
export function backoffMs(b: Backoff, attempt: number, random: () => number = Math.random): number {
  const w = Math.min(b.firstMs * 2 ** (attempt - 1), b.maxMs ?? Infinity);
  return b.jitter ? w / 2 + random() * w : w;
}

/** `T`: what `settle` may find the operation returned; a policy without `settle` is a RetryPolicy<never> and serves any operation. */
export interface RetryPolicy<T> extends Backoff {
  /** Attempts in all, the first included. */
  attempts: number;
  /** Whether failure `e` of attempt `attempt` may be tried again; any other failure is thrown as it is. */
  retryable(e: unknown, attempt: number): boolean;
  /**
   * A retryable failure may have taken effect: look, and return `{ value }` when it did (the
   * operation then succeeds with it), undefined when it did not, or throw to stop. Runs before
   * the attempt count is checked, so a failed last attempt is looked at too.
   */
  settle?(e: unknown, attempt: number): Promise<{ value: T } | undefined>;
  /** The error to throw once the attempts are used up (default: the last failure). */
  exhausted?(e: unknown, attempt: number): unknown;
}

/**
 * After attempt `attempt` failed with `e`: throws when that is final (not retryable, or no
 * attempt left), returns `{ value }` when `settle` found that it took effect, and otherwise
 * waits the backoff and returns undefined (try again). `retry` is built on it; a loop that
 * cannot be a callback (a generator yielding inside its attempt) calls it directly.
 */
export async function afterFailure<T>(p: RetryPolicy<T>, e: unknown, attempt: number): Promise<{ value: T } | undefined> {
  if (!p.retryable(e, attempt)) throw e;
  const settled = await p.settle?.(e, attempt);
  if (settled) return settled;
  if (attempt >= p.attempts) throw p.exhausted ? p.exhausted(e, attempt) : e;
  await sleep(backoffMs(p, attempt));
  return undefined;
}

/** Runs `fn` (given the attempt number, from 1) until it succeeds or `p` says to stop. */
export async function retry<T>(p: RetryPolicy<NoInfer<T>>, fn: (attempt: number) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (e) {
      const settled = await afterFailure(p, e, attempt);
      if (settled) return settled.value;
    }
  }
}
