/**
 * `mstore serve`'s tokens: the file of `SCOPE TOKEN` lines (docs/protocol.md §2.1), kept as
 * sha256 digests only, and the scope of a presented token, compared in constant time against
 * every entry. Used by the API's bearer check and by the web view's login form.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { MstoreError, errorLine } from '../../lib/errors.js';

export type Scope = 'read' | 'push' | 'admin';
export const SCOPE_RANK: Record<Scope, number> = { read: 1, push: 2, admin: 3 };

/** A token as the server keeps it: only its sha256, so equal-length constant-time comparison is possible. */
export interface TokenEntry {
  scope: Scope;
  digest: Buffer;
}

const MIN_TOKEN_CHARS = 16;

/**
 * Parses a tokens file: `SCOPE TOKEN` per line, `#` comments, blank lines. Errors name
 * file:line and never the token.
 */
export function parseTokens(text: string, file: string): TokenEntry[] {
  const out: TokenEntry[] = [];
  const seen = new Set<string>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '').trim();
    if (!line || line.startsWith('#')) return;
    const where = `${file}:${i + 1}`;
    const parts = line.split(/[ \t]+/);
    if (parts.length !== 2) throw new MstoreError('EBADINPUT', `${where}: expected 'SCOPE TOKEN' (scope read, push or admin)`);
    const [scope, token] = parts;
    if (!Object.hasOwn(SCOPE_RANK, scope)) {
      // The first word may be the token itself (a line written 'TOKEN SCOPE'): a word is shown
      // only when it is too short to be any token this server accepts.
      const shown = /^[a-z]{1,8}$/.test(scope) ? ` '${scope}'` : '';
      const hint = Object.hasOwn(SCOPE_RANK, token) ? "; the line looks written the wrong way round ('TOKEN SCOPE')" : '';
      throw new MstoreError('EBADINPUT', `${where}: unknown scope${shown} (each line is 'SCOPE TOKEN', scope read, push or admin${hint}); the token is not shown`);
    }
    if (!/^[\x21-\x7e]+$/.test(token)) throw new MstoreError('EBADINPUT', `${where}: the token has characters outside printable ASCII`);
    if (token.length < MIN_TOKEN_CHARS) throw new MstoreError('EBADINPUT', `${where}: the token is shorter than ${MIN_TOKEN_CHARS} characters`);
    const digest = createHash('sha256').update(token).digest();
    const key = digest.toString('hex');
    if (seen.has(key)) throw new MstoreError('EBADINPUT', `${where}: the same token appears on an earlier line`);
    seen.add(key);
    out.push({ scope: scope as Scope, digest });
  });
  if (!out.length) throw new MstoreError('EBADINPUT', `${file}: no tokens (one 'SCOPE TOKEN' per line)`);
  return out;
}

/** Reads and parses a tokens file; `warn` gets a line when others may read it. */
export async function loadTokens(file: string, warn?: (line: string) => void): Promise<TokenEntry[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new MstoreError('EBADINPUT', `cannot read tokens file ${file}: ${(e as NodeJS.ErrnoException).code ?? errorLine(e)}`);
  }
  const tokens = parseTokens(text, file);
  const st = await stat(file);
  if (st.mode & 0o077 && warn) warn(`tokens file ${file} is readable by group or others (chmod 600 it)`);
  return tokens;
}

/**
 * The scope of a presented token, or undefined. Every entry is compared (no early exit) on
 * sha256 digests, so neither the position nor a common prefix of a token leaks through timing.
 */
export function tokenScope(tokens: TokenEntry[], presented: string): Scope | undefined {
  const digest = createHash('sha256').update(presented).digest();
  let best: Scope | undefined;
  for (const t of tokens) {
    const eq = timingSafeEqual(digest, t.digest);
    if (eq && (!best || SCOPE_RANK[t.scope] > SCOPE_RANK[best])) best = t.scope;
  }
  return best;
}
