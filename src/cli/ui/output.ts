/**
 * Rendering shared by the commands: bytes, rates, durations, colour, JSON, progress bars,
 * errors; and their argument checks. The one place numbers become text for people: a size,
 * rate or duration printed anywhere in cli/ goes through formatBytes/formatRate/formatDuration
 * (whole bytes, at most 3 significant digits, a unit), never a raw float or a rounded 2^63.
 */
import type cliProgressModule from 'cli-progress';
import { lazyModule } from '../../lib/lazy-module.js';
import { MstoreError, errorLine } from '../../lib/errors.js';
import { Store } from '../../repo/store.js';
import { removalHint } from '../../repo/reflog.js';
import { exitStatus } from '../exit-codes.js';
import type { Progress } from '../../lib/progress.js';
import { formatBytes } from '../../lib/units.js';

/** Loaded only when a bar is drawn (stderr a terminal): most runs draw none. */
const cliProgress = lazyModule<typeof cliProgressModule>('cli-progress');

/** A byte count as people read it (lib/units.ts, shared with the web view). */
export { formatBytes };

/** Bytes over seconds as a rate: `386 B/s`, `9.05 MiB/s`; `-` when there is no time to divide by. */
export function formatRate(bytes: number, seconds: number): string {
  if (!(seconds > 0) || !Number.isFinite(bytes)) return '-';
  return `${formatBytes(bytes / seconds)}/s`;
}

/** A duration in seconds: `85 ms`, `2.31 s`, `14.2 s`, `3 min 05 s`, `2 h 07 min`. */
export function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '-';
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 10) return `${seconds.toFixed(2)} s`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const whole = Math.round(seconds);
  if (whole < 3600) return `${Math.floor(whole / 60)} min ${String(whole % 60).padStart(2, '0')} s`;
  const minutes = Math.round(seconds / 60);
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, '0')} min`;
}

/** The one colour switch: stdout is a terminal and NO_COLOR is unset. */
export const useColor = (): boolean => !process.env.NO_COLOR && !!process.stdout.isTTY;
const paint = (code: number) => (s: string): string => (useColor() ? `\x1b[${code}m${s}\x1b[0m` : s);
export const yellow = paint(33);
export const green = paint(32);
export const red = paint(31);
export const dim = paint(2);
const cyan = paint(36);

const STATUS_LOOK: Record<string, { symbol: string; color: (s: string) => string }> = {
  draft: { symbol: '○', color: dim },
  pending: { symbol: '◔', color: yellow },
  training: { symbol: '▶', color: cyan },
  completed: { symbol: '✔', color: green },
  failed: { symbol: '✘', color: red },
};

/** A training status with its symbol and colour on a terminal; `[status]` otherwise (NO_COLOR, pipes). */
export function statusBadge(status: string): string {
  const look = STATUS_LOOK[status];
  if (!look || !useColor()) return `[${status}]`;
  return look.color(`${look.symbol} ${status}`);
}

export function printJson(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
}

export function out(line = ''): void {
  process.stdout.write(`${line}\n`);
}

export function warn(line: string): void {
  process.stderr.write(`mstore: warning: ${line}\n`);
}

/** A failure found while the command still printed what it could: its line on stderr, exit 1. */
export function failLine(line: string): void {
  process.stderr.write(`mstore: error: ${line}\n`);
  process.exitCode = 1;
}

/** A byte progress bar on stderr, only when stderr is a terminal. */
export function progressBar(label: string): { update: (p: { done: number; total: number; phase?: Progress['phase'] }) => void; stop: () => void } {
  if (!process.stderr.isTTY) return { update: () => undefined, stop: () => undefined };
  const bar = new (cliProgress().SingleBar)(
    {
      stream: process.stderr,
      format: `${label} {bar} {percentage}% | {done}/{size} | {rate} | ETA {eta_formatted}`,
      hideCursor: true,
      clearOnComplete: true,
      etaBuffer: 50,
    },
    cliProgress().Presets.shades_classic,
  );
  const started = Date.now();
  let running = false;
  return {
    update: (p) => {
      const rate = formatRate(p.done, Math.max(0.001, (Date.now() - started) / 1000));
      const payload = { done: formatBytes(p.done), size: formatBytes(p.total), rate };
      if (!running) {
        bar.start(Math.max(1, p.total), p.done, payload);
        running = true;
      } else bar.update(p.done, payload);
    },
    stop: () => {
      if (running) bar.stop();
    },
  };
}

/** Opens the store around `cwd`, runs `fn`, and always releases lmdb and the hash worker. */
export async function withStore<T>(fn: (store: Store) => Promise<T>): Promise<T> {
  const store = await Store.find(process.cwd());
  try {
    return await fn(store);
  } catch (e) {
    // A removed version's name (looked for in this store, not on a remote): say what happened to it and how to get it back.
    if (e instanceof MstoreError && e.code === 'EUNKNOWNREV' && e.what && e.where === undefined) {
      const hint = await removalHint(store, e.what).catch(() => undefined);
      if (hint) throw new MstoreError('EUNKNOWNREV', `unknown revision '${e.what}': ${hint}`, { what: e.what });
    }
    throw e;
  } finally {
    await store.close();
  }
}

/** Command handler wrapper: one clear line on failure, the exit status of the error's code. */
export function handler<A>(fn: (argv: A) => Promise<void>): (argv: A) => Promise<void> {
  return async (argv: A) => {
    try {
      await fn(argv);
    } catch (e) {
      process.stderr.write(`mstore: error: ${errorLine(e)}\n`);
      if (process.env.MSTORE_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
      process.exitCode = exitStatus(e);
    }
  };
}

/** Parses repeated KEY=VALUE options; values that parse as JSON are kept typed. */
export function parseKeyValues(items: string[] | undefined, flag: string): Record<string, unknown> {
  const outObj: Record<string, unknown> = {};
  for (const item of items ?? []) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new MstoreError('EUSAGE', `${flag} expects KEY=VALUE, got '${item}'`);
    const raw = item.slice(eq + 1);
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      value = raw;
    }
    outObj[item.slice(0, eq)] = value;
  }
  return outObj;
}

/** A yargs `coerce` for a count option (`-n`, `--threads`): a non-negative integer, else a usage error. */
export function wholeNumber(flag: string): (v: number) => number {
  return (v) => {
    if (!Number.isInteger(v) || v < 0) throw new Error(`${flag} expects a non-negative integer`);
    return v;
  };
}
