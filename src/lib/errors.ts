/**
 * Typed errors with stable codes. The library never prints or exits: commands map
 * `exitCode` to the process exit status and print `message` as one line.
 */
export type ErrorCode =
  | 'ENOTSTORE' // no .mstore/ found walking up
  | 'EEXISTS' // init over an existing store
  | 'EUNKNOWNREV' // a revision that resolves to nothing
  | 'EBADNAME' // a tag, line or ref name that is not allowed
  | 'ELOCKED' // another writer holds the store lock
  | 'ECORRUPT' // stored data does not hash to its id, or does not parse
  | 'EMISSING' // a chunk, pack or file manifest the index or a pointer needs is absent
  | 'EBADINPUT' // unreadable or invalid input file, bad JSON, bad option value
  | 'ECONFLICT' // checkout would overwrite a modified or untracked file
  | 'ENOCHANGE' // nothing to commit
  | 'EREJECTED' // a remote refused a ref update (non-fast-forward, moved meanwhile)
  | 'EAUTH' // a remote refused the credentials (401/403)
  | 'EREMOTE'; // a remote could not be reached or answered something unusable

export class MstoreError extends Error {
  readonly code: ErrorCode;
  readonly exitCode: number;
  /** What the error is about, when a caller may explain it further (the revision of EUNKNOWNREV). */
  subject?: string;
  constructor(code: ErrorCode, message: string, exitCode = 1, subject?: string) {
    super(message);
    this.name = 'MstoreError';
    this.code = code;
    this.exitCode = exitCode;
    this.subject = subject;
  }
}

/** The one-line text of any thrown value (node errors carry their own code and path). */
export function errorLine(e: unknown): string {
  if (e instanceof MstoreError) return e.message;
  if (e instanceof Error) return e.message.split('\n')[0];
  return String(e);
}
