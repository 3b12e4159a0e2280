/**
 * The test-only fault-injection seam (docs/safety.md, "Fault injection (tests only)"). Every
 * write, fsync and rename on the store's data path goes through src/lib/fsutil.ts, which calls
 * fault() first; the lmdb index calls it at each transaction (class `index`).
 *
 *   MSTORE_FAULT=write:7:ENOSPC     the 7th write-class call of this process fails (ENOSPC)
 *   MSTORE_FAULT=fsync:3+:EIO       the 3rd and every later fsync-class call fail (a full disk stays full)
 *   MSTORE_FAULT_COUNT=FILE         at exit, append one JSON line of this process's calls per class
 *   MSTORE_FAULT_TRACE=FILE         append one line per call: class, N, syscall, file (to find a call site)
 *
 * Classes: write, fsync, rename, index; errors: ENOSPC, EIO. Rules: the environment is read
 * once, at load; with neither variable set fault() returns at its first test (inert, no
 * counting, no exit hook). The injected error has node's shape (code, errno, syscall, path,
 * "CODE: text, syscall 'path'") so it travels the same way a real one does.
 */
import { appendFileSync } from 'node:fs';

export type FaultClass = 'write' | 'fsync' | 'rename' | 'index';
const CLASSES: readonly FaultClass[] = ['write', 'fsync', 'rename', 'index'];

/** errno and libuv's text for the errors the seam can inject. */
const ERRORS: Record<string, { errno: number; text: string }> = {
  ENOSPC: { errno: -28, text: 'no space left on device' },
  EIO: { errno: -5, text: 'i/o error' },
};

interface Spec {
  cls: FaultClass;
  nth: number;
  sticky: boolean;
  code: string;
}

/** The parsed MSTORE_FAULT, or a message saying why it is not valid (reported at the first call). */
function parse(text: string | undefined): Spec | string | undefined {
  if (text === undefined || text === '') return undefined;
  const m = /^(write|fsync|rename|index):([1-9][0-9]*)(\+?):(ENOSPC|EIO)$/.exec(text);
  if (!m) return `MSTORE_FAULT='${text}' is not CLASS:N[+]:ERROR (classes ${CLASSES.join(', ')}; errors ${Object.keys(ERRORS).join(', ')})`;
  return { cls: m[1] as FaultClass, nth: Number(m[2]), sticky: m[3] === '+', code: m[4] };
}

const spec = parse(process.env.MSTORE_FAULT);
const countFile = process.env.MSTORE_FAULT_COUNT || undefined;
const traceFile = process.env.MSTORE_FAULT_TRACE || undefined;
/** False in every ordinary run: then fault() does nothing at all. */
const ACTIVE = spec !== undefined || countFile !== undefined || traceFile !== undefined;
const counts: Record<FaultClass, number> = { write: 0, fsync: 0, rename: 0, index: 0 };

if (countFile) {
  const file = countFile;
  process.on('exit', () => {
    try {
      appendFileSync(file, `${JSON.stringify({ pid: process.pid, args: process.argv.slice(2), ...counts })}\n`);
    } catch {
      // A test that cannot read the counts fails on its own; never turn an exit into a crash.
    }
  });
}

/** An error shaped like node's own for `syscall` on `target` (a path, or "from' -> 'to"). */
export function errnoError(code: string, syscall: string, target: string): NodeJS.ErrnoException {
  const info = ERRORS[code];
  const e: NodeJS.ErrnoException = new Error(`${code}: ${info.text}, ${syscall} '${target}'`);
  e.code = code;
  e.errno = info.errno;
  e.syscall = syscall;
  e.path = target;
  return e;
}

/**
 * One call of class `cls` (`syscall` on `target`) is about to happen: count it, and throw the
 * injected error when MSTORE_FAULT names this call.
 */
export function fault(cls: FaultClass, syscall: string, target: string): void {
  if (!ACTIVE) return;
  const n = ++counts[cls];
  if (traceFile) appendFileSync(traceFile, `${cls} ${n} ${syscall} ${target}\n`);
  if (spec === undefined) return;
  if (typeof spec === 'string') throw new Error(spec);
  if (spec.cls === cls && (n === spec.nth || (spec.sticky && n > spec.nth))) throw errnoError(spec.code, syscall, target);
}
