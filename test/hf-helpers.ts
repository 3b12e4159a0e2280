/**
 * The Hugging Face stack for tests: the interpreter that has it, and test/python/hf_stack.py
 * run without blocking this process (a test's own servers and proxies keep answering meanwhile).
 */
import { spawn, spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const PY = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../test/python');

let found: string | undefined;
/**
 * An interpreter with torch, transformers, huggingface_hub, fastapi and uvicorn: $MSTORE_HF_PYTHON,
 * the venv `bash .ci/run` builds, $MSTORE_PYTHON, python3. Throws (fails the test) when none has them.
 */
export function hfPython(): string {
  if (found) return found;
  const candidates = [process.env.MSTORE_HF_PYTHON, path.join(os.homedir(), '.cache', 'mstore', 'venv', 'bin', 'python'), process.env.MSTORE_PYTHON, 'python3'].filter((p): p is string => !!p);
  for (const p of candidates) {
    if (spawnSync(p, ['-c', 'import torch, transformers, huggingface_hub, fastapi, uvicorn'], { stdio: 'ignore' }).status === 0) return (found = p);
  }
  throw new Error(`no Python with the Hugging Face stack among ${candidates.join(', ')}: run bash .ci/run (it builds the venv) or set MSTORE_HF_PYTHON`);
}

/** A script of test/python/ by name. */
export function pyScript(name: string): string {
  return path.join(PY, name);
}

/** Runs hf_stack.py ARGS; resolves to the JSON object it prints last. */
export function hfStack(args: string[], env: Record<string, string>, cwd: string): Promise<Record<string, unknown>> {
  const child = spawn(hfPython(), [pyScript('hf_stack.py'), ...args], { cwd, env: { ...process.env, HF_HUB_DISABLE_TELEMETRY: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
  return new Promise((resolve, reject) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`hf_stack.py ${args[0]} exited ${code ?? signal}: ${err.slice(-3000)}`));
      else resolve(JSON.parse(out.trim().split('\n').pop()!) as Record<string, unknown>);
    });
  });
}
