/**
 * The process exit status of a failed command, from its error's code: the one place that
 * decides it (the library only says what went wrong). 2: the caller's arguments are wrong (a
 * bad option value or combination, a name that is not allowed); 1: everything else.
 */
import { MstoreError, type ErrorCode } from '../lib/errors.js';

/** Codes that mean "called wrongly": fix the command line, not the data. */
const USAGE: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['EUSAGE', 'EBADNAME']);

export function exitStatusOf(code: ErrorCode): 1 | 2 {
  return USAGE.has(code) ? 2 : 1;
}

/** Any thrown value: an MstoreError by its code, anything else (a bug, a node error) 1. */
export function exitStatus(e: unknown): 1 | 2 {
  return e instanceof MstoreError ? exitStatusOf(e.code) : 1;
}
