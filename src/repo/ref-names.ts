/**
 * The one rule for ref names (docs/format.md §13.1), used wherever a ref is created: by
 * moveRefs before any ref moves, by the transports at their door, and (through the short-name
 * form) by tag and line names. It is git's check-ref-format plus the filesystem's limit on a
 * name's parts, plus mstore's namespace rule: a name never shadows another namespace. A name
 * this rule lets through is a name the ref writer takes. Pure: no store, no I/O.
 */
import { MstoreError } from '../lib/errors.js';

/** Longest full ref name, in UTF-8 bytes. */
export const MAX_REF_BYTES = 1024;
/** Longest part between slashes, in UTF-8 bytes: a file name on every common filesystem. */
export const MAX_REF_PART_BYTES = 255;
/** Default cap on the refs one store holds (config `maxRefs`). */
export const DEFAULT_MAX_REFS = 10_000;

/**
 * Why a slash-separated name breaks git's check-ref-format or the part limit, or undefined.
 * Applied to full names (`refs/tags/x`) and to the short names a user types (`x`).
 */
export function namePartsProblem(name: string): string | undefined {
  if (name === '') return 'it is empty';
  if (Buffer.byteLength(name) > MAX_REF_BYTES) return `it is over ${MAX_REF_BYTES} bytes`;
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(name)) return 'control characters are not allowed';
  if (name.includes(' ')) return 'a space is not allowed';
  const bad = /[~^:?*[\\]/.exec(name);
  if (bad) return `'${bad[0]}' is not allowed`;
  if (name.includes('..')) return "'..' is not allowed";
  if (name.includes('@{')) return "'@{' is not allowed";
  if (name === '@') return "'@' alone is not allowed";
  if (name.startsWith('/') || name.endsWith('/')) return "it may not begin or end with '/'";
  if (name.includes('//')) return "'//' is not allowed";
  if (name.endsWith('.')) return "it may not end in '.'";
  for (const part of name.split('/')) {
    if (part.startsWith('.')) return `a part may not begin with '.' ('${shown(part)}')`;
    if (part.endsWith('.lock')) return `a part may not end in '.lock' ('${shown(part)}')`;
    const bytes = Buffer.byteLength(part);
    if (bytes > MAX_REF_PART_BYTES) return `a part is over ${MAX_REF_PART_BYTES} bytes (${bytes})`;
  }
  return undefined;
}

/**
 * Why a full ref name is not allowed, or undefined: the parts rule, then `refs/<namespace>/<name>`
 * and, under refs/heads/ and refs/tags/, no name that shadows another ref: one that starts with
 * `refs/` (refs/heads/refs/tags/v004 would answer for refs/tags/v004 in a guessing reader), a
 * part `HEAD`, or a tag named `latest` (`latest` and `LINE/latest` are line heads).
 */
export function refNameProblem(ref: string): string | undefined {
  const parts = namePartsProblem(ref);
  if (parts) return parts;
  const p = ref.split('/');
  if (p[0] !== 'refs' || p.length < 3) return 'a ref is refs/<namespace>/<name>';
  if (p[1] === 'heads' || p[1] === 'tags') {
    const short = p.slice(2);
    if (short[0] === 'refs') return `it would shadow another namespace (refs/${p[1]}/refs/...)`;
    if (short.includes('HEAD')) return "it would shadow another namespace ('HEAD' is git's)";
    if (p[1] === 'tags' && short[short.length - 1] === 'latest') return "it would shadow a line head ('latest' and LINE/latest are line heads)";
  }
  return undefined;
}

/** A name for a message: control characters shown as '?', long names cut. */
export function shown(name: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = name.replace(/[\x00-\x1f\x7f]/g, '?');
  return clean.length > 80 ? `${clean.slice(0, 60)}…(${Buffer.byteLength(name)} bytes)` : clean;
}

/** Throws EBADNAME naming the ref and the rule it breaks. */
export function checkRefName(ref: string): void {
  const why = refNameProblem(ref);
  if (why) throw new MstoreError('EBADNAME', `invalid ref name '${shown(ref)}': ${why}`, { what: ref });
}
