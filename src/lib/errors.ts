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
