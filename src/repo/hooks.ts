/**
 * A store's hooks (docs/hooks.md): executables in `hooks/` of the store directory, the
 * defaults that `init` installs from the package, and the one launcher every hook runs
 * through. The launcher only runs: each caller decides what a failed hook means
 * (consolidate fails, post-receive reports and goes on).
 */
import { chmod, copyFile, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { packageRoot } from '../lib/package-files.js';

/** The hooks a new store gets. */
export const DEFAULT_HOOKS = ['consolidate', 'post-receive'];

/** Copies the default hooks into a store's hooks/ directory (executable). */
export async function installDefaultHooks(hooksDir: string): Promise<void> {
  const root = packageRoot();
  for (const name of DEFAULT_HOOKS) {
    const dest = path.join(hooksDir, name);
    await copyFile(path.join(root, 'hooks', name), dest);
    await chmod(dest, 0o755);
  }
}

/** The store's hook `name` when it is an executable file, else undefined. */
export async function storeHook(storeDir: string, name: string): Promise<string | undefined> {
  const file = path.join(storeDir, 'hooks', name);
  const st = await stat(file).catch(() => undefined);
  return st?.isFile() && (st.mode & 0o111) !== 0 ? file : undefined;
}

/**
 * Whether the store runs the packaged default of hook `name`: it has none of its own, or the one
 * `init` installed, byte for byte. An edited or replaced hook is the store's own.
 */
export async function runsDefaultHook(storeDir: string, name: string): Promise<boolean> {
  const own = await storeHook(storeDir, name);
  if (!own) return true;
  const [mine, shipped] = await Promise.all([readFile(own).catch(() => undefined), readFile(defaultHook(name)).catch(() => undefined)]);
  return !!mine && !!shipped && mine.equals(shipped);
}

/** The packaged default of a hook (what `init` installs). */
export function defaultHook(name: string): string {
  return path.join(packageRoot(), 'hooks', name);
}

export interface HookRun {
  /** Exit status (null when a signal ended it). */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Everything it wrote on stdout, when `captureStdout` was set. */
  stdout: string;
  /** Its last non-blank line of output on stderr (or stdout when not captured): why it failed. */
  lastLine: string;
  /** Set when it could not be started at all. */
  startError?: Error;
}

export interface HookOptions {
  /** Written to its stdin, which is then closed. */
  input: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Keep stdout for the caller instead of passing it line by line to onLine. */
  captureStdout?: boolean;
  /** Each line of its output (stderr, and stdout unless captured), as it comes. */
  onLine?: (line: string) => void;
}

/** Runs a hook to its end; never rejects (a hook that cannot start reports startError). */
export async function runHook(file: string, opts: HookOptions): Promise<HookRun> {
  // Loaded here, not with the module: every command imports the store's code, few run hooks.
  const { spawn } = await import('node:child_process');
  return new Promise((resolve) => {
    const child = spawn(file, [], { cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? { ...process.env } });
    let stdout = '';
    let lastLine = '';
    const flushes: (() => void)[] = [];
    const lines = (): ((d: Buffer) => void) => {
      let partial = '';
      const emit = (l: string): void => {
        if (l.trim()) lastLine = l.trim();
        opts.onLine?.(l);
      };
      flushes.push(() => partial && emit(partial));
      return (d) => {
        const parts = (partial + d.toString('utf8')).split('\n');
        partial = parts.pop() ?? '';
        for (const l of parts) emit(l);
      };
    };
    if (opts.captureStdout) child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    else child.stdout.on('data', lines());
    child.stderr.on('data', lines());
    let started = true;
    child.on('error', (e) => {
      started = false;
      resolve({ code: null, signal: null, stdout, lastLine, startError: e });
    });
    child.on('close', (code, signal) => {
      if (!started) return;
      for (const f of flushes) f();
      resolve({ code, signal, stdout, lastLine });
    });
    child.stdin.on('error', () => undefined); // a hook that does not read its stdin
    child.stdin.end(opts.input);
  });
}
