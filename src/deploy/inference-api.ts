/**
 * Calls to the inference API (register, set_active, health): a timeout per request, and
 * retries with exponential backoff on connection errors and 5xx answers (a server restarting
 * is the usual cause); a 4xx answer is final. Through Node's fetch, which is undici bundled
 * with Node: `deploy apply` runs on every deploy and rollback, and loading the undici package
 * would add ~0.1 s of start-up to a rollback that has to take under a second.
 */
import { render, type ApiCall, type DeployConfig, type TemplateValues } from '../repo/deploy-config.js';
import { retry } from '../lib/retry.js';

export interface CallResult {
  status: number;
  body: string;
}

export class ApiError extends Error {
  override readonly name = 'ApiError';
}

/** A 4xx answer (or another than `expect`, below 500): final, another attempt would get the same. */
class Refused extends ApiError {}

/** One configured call; resolves with a 2xx answer (or `expect`), throws ApiError otherwise. */
export async function callApi(cfg: DeployConfig['api'], what: string, call: ApiCall, values: TemplateValues, expect?: number): Promise<CallResult> {
  // The call's path goes under the base URL's own path (an API mounted at /api keeps it).
  const base = new URL(cfg.baseUrl);
  const url = new URL(`${base.pathname.replace(/\/$/, '')}${render(call.path, values)}`, base);
  const body = call.body === undefined ? undefined : JSON.stringify(render(call.body, values));
  const policy = { attempts: cfg.attempts, firstMs: cfg.backoffMs, retryable: (e: unknown) => !(e instanceof Refused) };
  return retry(policy, async () => {
    let r: Response;
    let text: string;
    try {
      r = await fetch(url, {
        method: call.method.toUpperCase(),
        headers: body ? { 'content-type': 'application/json' } : {},
        body,
        signal: AbortSignal.timeout(cfg.timeoutMs),
      });
      text = (await r.text()).slice(0, 2000);
    } catch (e) {
      // fetch says "fetch failed" and keeps the reason (ECONNREFUSED, a timeout) in `cause`.
      const err = e as Error & { cause?: { code?: string; message?: string } };
      const why = err.name === 'TimeoutError' ? `no answer within ${cfg.timeoutMs} ms` : (err.cause?.code ?? err.cause?.message ?? err.message).split('\n')[0];
      throw new ApiError(`${what}: ${call.method.toUpperCase()} ${url.origin}${url.pathname} failed: ${why}`);
    }
    const okStatus = expect !== undefined ? r.status === expect : r.status >= 200 && r.status < 300;
    if (okStatus) return { status: r.status, body: text };
    const answered = `${what}: ${call.method.toUpperCase()} ${url.pathname} answered ${r.status}${text ? ` ${oneLine(text)}` : ''}`;
    throw r.status < 500 ? new Refused(answered) : new ApiError(answered);
  });
}

function oneLine(s: string): string {
  const t = s.replace(/\s+/g, ' ').trim();
  return t.length > 200 ? `${t.slice(0, 200)}…` : t;
}
