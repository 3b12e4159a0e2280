/**
 * Typed errors with stable codes. The library never prints or exits: it says what went wrong
 * (a code, one line of message, what and where) and src/cli/exit-codes.ts maps the code to
 * the process exit status.
 */

/** Every code, in one list so callers (the CLI's exit statuses, tests) can go through them all. */
export const ERROR_CODES = [
  'EUSAGE', // the caller's arguments are wrong: a bad option value or combination
  'ENOTSTORE', // no .mstore/ found walking up
  'EEXISTS', // init over an existing store
  'EUNKNOWNREV', // a revision that resolves to nothing (or to no version)
  'ENOTFOUND', // a named thing that does not exist: remote, backup store, label, tag, line, file in a version, deploy config or attempt
  'EBADNAME', // a tag, line, label, remote, backup or ref name that is not allowed or collides
  'ELOCKED', // another writer holds the store lock
  'ECORRUPT', // stored data does not hash to its id, or does not parse
  'EMISSING', // a chunk, pack or file manifest the index or a pointer needs is absent
  'EBADINPUT', // unreadable or invalid input file, bad JSON, data that cannot be used
  'ECONFLICT', // checkout would overwrite a modified or untracked file
  'ENOCHANGE', // nothing to commit
  'EREJECTED', // a remote refused a ref update (non-fast-forward, moved meanwhile)
  'EAUTH', // a remote refused the credentials (401/403)
  'EREMOTE', // a remote could not be reached or answered something unusable
  'ESTORAGE', // the device refused a write: no space left, quota, read-only file system, I/O error
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/** What an error is about, for a caller that explains it further or acts on it. */
export interface ErrorFields {
  /** The thing named: a revision (for EUNKNOWNREV, the name that resolves to nothing), a remote, a backup store, a label, a file path. */
  what?: string;
  /** Where it was looked for, when not this store: a remote, a version, the ref history. */
  where?: string;
}

export class MstoreError extends Error {
  readonly code: ErrorCode;
  readonly what?: string;
  readonly where?: string;
  constructor(code: ErrorCode, message: string, fields: ErrorFields = {}) {
    super(message);
    this.name = 'MstoreError';
    this.code = code;
    if (fields.what !== undefined) this.what = fields.what;
    if (fields.where !== undefined) this.where = fields.where;
  }
}

/** The one-line text of any thrown value (node errors carry their own code and path). */
export function errorLine(e: unknown): string {
  if (e instanceof MstoreError) return e.message;
  if (e instanceof Error) return e.message.split('\n')[0];
  return String(e);
}

/** What each storage errno means, in the words the one-line message uses. */
const STORAGE_ERRNOS: Readonly<Record<string, string>> = {
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'the file system is read-only',
  EIO: 'input/output error from the device',
};
/** The same conditions as native libraries (lmdb) word them, for errors that carry no errno code. */
const STORAGE_TEXTS: readonly [RegExp, string][] = [
  [/no space left on device/i, 'ENOSPC'],
  [/disk quota exceeded/i, 'EDQUOT'],
  [/read-only file system/i, 'EROFS'],
  [/input\/output error/i, 'EIO'],
];

function storageErrno(e: unknown): string | undefined {
  if (e instanceof MstoreError) return undefined;
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code in STORAGE_ERRNOS) return code;
  const text = e instanceof Error ? e.message : String(e);
  return STORAGE_TEXTS.find(([re]) => re.test(text))?.[1];
}

/** True when `e` is the device refusing a write (ENOSPC, EDQUOT, EROFS, EIO), by code or by native text. */
export function isStorageErrno(e: unknown): boolean {
  return storageErrno(e) !== undefined;
}

/**
 * The one conversion of a device's refusal into `ESTORAGE`, naming the file (the error's own
 * path when it has one, else `file`); undefined for anything else, which the caller rethrows.
 */
export function storageError(e: unknown, file: string, doing = 'writing', opts: { nameGiven?: boolean } = {}): MstoreError | undefined {
  const errno = storageErrno(e);
  if (!errno) return undefined;
  // The error's own path, unless the caller's name says more (a git object, not its temporary).
  const own = (e as { path?: unknown }).path;
  const where = !opts.nameGiven && typeof own === 'string' && own ? own : file;
  return new MstoreError('ESTORAGE', `${doing} ${where}: ${STORAGE_ERRNOS[errno]} (${errno}); nothing was published`, { what: where });
}
