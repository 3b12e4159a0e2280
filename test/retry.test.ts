/** src/lib/retry.ts: the one retry loop: attempts, which failures it retries, settling unsure outcomes, the backoff. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { afterFailure, backoffMs, retry, type RetryPolicy } from '../src/lib/retry.js';

class Passing extends Error {}
class Final extends Error {}

const policy = (attempts: number, extra: Partial<RetryPolicy<string>> = {}): RetryPolicy<string> => ({
  attempts,
  firstMs: 1,
  retryable: (e) => e instanceof Passing,
  ...extra,
});

/** Runs retry with an operation that fails as `outcomes` says (an Error to throw, or a value), counting calls. */
async function run(p: RetryPolicy<string>, outcomes: (Error | string)[]): Promise<{ calls: number[]; result?: string; error?: unknown }> {
  const calls: number[] = [];
  try {
    const result = await retry(p, async (attempt) => {
      calls.push(attempt);
      const o = outcomes[Math.min(attempt, outcomes.length) - 1];
      if (o instanceof Error) throw o;
      return o;
    });
    return { calls, result };
  } catch (error) {
    return { calls, error };
  }
}

test('retry: gives up after the policy attempts, with the exhausted error', async () => {
  const r = await run(policy(4), [new Passing('down')]);
  assert.equal(r.calls, [1, 2, 3, 4]);
  assert.instance(r.error, Passing);
  const e = await run(policy(3, { exhausted: (x, n) => new Final(`${(x as Error).message} after ${n}`) }), [new Passing('down')]);
  assert.equal(e.calls, [1, 2, 3]);
  assert.instance(e.error, Final);
  assert.is((e.error as Error).message, 'down after 3');
});

test('retry: retries only retryable failures, and stops at the first success', async () => {
  const final = new Final('refused');
  const once = await run(policy(5), [final]);
  assert.equal(once.calls, [1]);
  assert.is(once.error, final, 'a final failure is thrown as it is, not the exhausted one');
  const mixed = await run(policy(5, { exhausted: () => new Error('exhausted') }), [new Passing('a'), final]);
  assert.equal(mixed.calls, [1, 2]);
  assert.is(mixed.error, final);
  const ok = await run(policy(5), [new Passing('a'), new Passing('b'), 'done']);
  assert.equal(ok.calls, [1, 2, 3]);
  assert.is(ok.result, 'done');
  const byAttempt = await run(policy(5, { retryable: (_e, n) => n < 2 }), [new Passing('a')]);
  assert.equal(byAttempt.calls, [1, 2], 'retryable sees the attempt number');
});

test('retry: settle decides an unsure failure, on the last attempt too', async () => {
  const looked: number[] = [];
  const landed = await run(policy(3, { settle: async (_e, n) => (looked.push(n), n === 2 ? { value: 'it landed' } : undefined) }), [new Passing('cut')]);
  assert.equal(landed.calls, [1, 2]);
  assert.is(landed.result, 'it landed');
  assert.equal(looked, [1, 2]);
  const last = await run(policy(1, { settle: async () => ({ value: 'seen' }) }), [new Passing('cut')]);
  assert.is(last.result, 'seen', 'the only attempt is looked at before giving up');
  const stop = new Final('moved meanwhile');
  const stopped = await run(
    policy(5, {
      settle: async () => {
        throw stop;
      },
    }),
    [new Passing('cut')],
  );
  assert.equal(stopped.calls, [1]);
  assert.is(stopped.error, stop);
  const notRetryable: number[] = [];
  await run(policy(3, { settle: async (_e, n) => (notRetryable.push(n), undefined) }), [new Final('no')]);
  assert.equal(notRetryable, [], 'settle is only asked about retryable failures');
});

test('backoff: doubles from firstMs, stops at maxMs, jitter spreads it over [w/2, 3w/2)', () => {
  assert.equal([1, 2, 3, 4, 5].map((n) => backoffMs({ firstMs: 250 }, n)), [250, 500, 1000, 2000, 4000]);
  assert.equal([1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoffMs({ firstMs: 20, maxMs: 1000 }, n)), [20, 40, 80, 160, 320, 640, 1000, 1000]);
  const j = { firstMs: 20, maxMs: 1000, jitter: true };
  assert.is(backoffMs(j, 1, () => 0), 10);
  assert.is(backoffMs(j, 1, () => 0.5), 20);
  assert.is(backoffMs(j, 3, () => 0.999), 40 + 0.999 * 80);
  assert.is(backoffMs(j, 9, () => 0), 500);
  for (let n = 1; n < 10; n++) {
    const w = Math.min(20 * 2 ** (n - 1), 1000);
    const d = backoffMs(j, n);
    assert.ok(d >= w / 2 && d < 1.5 * w, `attempt ${n}: ${d} ms outside [${w / 2}, ${1.5 * w})`);
  }
});

test('retry: waits the backoff between attempts, not after the last', async () => {
  const started = performance.now();
  const r = await run({ attempts: 3, firstMs: 40, retryable: () => true }, [new Passing('down')]);
  const ms = performance.now() - started;
  assert.equal(r.calls, [1, 2, 3]);
  // 40 + 80 ms of waits; timers may fire a millisecond early.
  assert.ok(ms >= 115, `took ${ms} ms`);
  const t = performance.now();
  const one = await run({ attempts: 1, firstMs: 60_000, retryable: () => true }, [new Passing('down')]);
  assert.instance(one.error, Passing);
  assert.ok(performance.now() - t < 5_000, 'no wait after the last attempt');
});

test('afterFailure: the step a generator loop uses: throws when final, resolves when it may go on', async () => {
  const p = policy(2, { exhausted: () => new Final('used up') });
  const final = new Final('no');
  await afterFailure(p, final, 1).then(
    () => assert.unreachable('a final failure must throw'),
    (e) => assert.is(e, final),
  );
  assert.is(await afterFailure(p, new Passing('cut'), 1), undefined);
  await afterFailure(p, new Passing('cut'), 2).then(
    () => assert.unreachable('the last attempt must throw'),
    (e) => assert.is((e as Error).message, 'used up'),
  );
});

test.run();
