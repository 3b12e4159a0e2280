/**
 * Which names a version can hold (docs/format.md §7.9): the one rule that commit and the
 * files-layout import apply before anything is written, and that readers of a version's tree
 * apply to every entry, so that a tree holding a name git or a file system cannot take is named,
 * never followed. Pure: names in, the rule they break (one line of text) or null out.
 *
 * The rule is at least what git's tree reader and fsck refuse (verify_path, is_hfs_dotgit,
 * is_ntfs_dotgit): a name that is `.git` to some file system, whatever its case, ignorable
 * Unicode code points, trailing dots or spaces, NTFS stream suffix or 8.3 short name.
 */

/** The most bytes of UTF-8 one name (path component) may have: what ext4, xfs, btrfs, APFS and NTFS hold. */
export const MAX_NAME_BYTES = 255;
/** The most bytes of UTF-8 a whole path may have (Linux's PATH_MAX, with its NUL). */
export const MAX_PATH_BYTES = 4095;

/** Code points HFS+ ignores when it compares names (git's is_hfs_dotgit list). */
const HFS_IGNORABLE = /[\u200c-\u200f\u202a-\u202e\u206a-\u206f\ufeff]/g;
/** C0 control characters and DEL: a name holding one breaks every line-based listing. */
const CONTROL = /[\u0001-\u001f\u007f]/;

/**
 * What a file system that folds names (NTFS, HFS+, APFS) sees: ignorable code points dropped,
 * an NTFS stream suffix (`name:stream`) dropped, lower case, trailing dots and spaces dropped.
 */
function folded(name: string): string {
  return name.replace(HFS_IGNORABLE, '').split(':')[0].toLowerCase().replace(/[. ]+$/, '');
}

const SHORT_NAMES = new Map<string, RegExp>();

/** True when some file system takes `name` for `base` (a dot name such as `.git`), or for its 8.3 short name `<base>~N`. */
function foldsTo(name: string, base: string): boolean {
  const f = folded(name);
  let short = SHORT_NAMES.get(base);
  if (!short) SHORT_NAMES.set(base, (short = new RegExp(`^${base.slice(1, 7)}~[1-9]$`)));
  return f === base || short.test(f);
}

/** Verdicts by name: a long history's trees repeat the same names thousands of times (issue 15). */
const verdicts = new Map<string, string | null>();
const symlinkVerdicts = new Map<string, string | null>();
const MAX_VERDICTS = 100_000;

/**
 * The rule one name (a path component) breaks, or null. `symlink`: the name is a symlink's
 * (git refuses a symlink named `.gitmodules`).
 */
export function nameProblem(name: string, opts: { symlink?: boolean } = {}): string | null {
  // keyed by the name itself (no string made per call: a walk over a history asks 500,000 times)
  const memo = opts.symlink ? symlinkVerdicts : verdicts;
  const known = memo.get(name);
  if (known !== undefined) return known;
  const verdict = judgeName(name, !!opts.symlink);
  if (memo.size >= MAX_VERDICTS) memo.clear();
  memo.set(name, verdict);
  return verdict;
}

function judgeName(name: string, symlink: boolean): string | null {
  if (name === '') return 'an empty name';
  if (name === '.' || name === '..') return `'${name}' is not a name`;
  if (name.includes('/')) return "a '/' inside one name";
  if (name.includes('\0')) return 'a NUL byte in a name';
  if (name.includes('\\')) return 'a backslash in a name (a path separator on Windows; git refuses it)';
  if (CONTROL.test(name)) return 'a control character in a name';
  const bytes = Buffer.byteLength(name);
  if (bytes > MAX_NAME_BYTES) return `a name of ${bytes} bytes (at most ${MAX_NAME_BYTES} bytes of UTF-8)`;
  const bare = name.replace(HFS_IGNORABLE, '');
  if (bare === '.' || bare === '..') return `'${bare}' but for ignorable Unicode code points`;
  if (foldsTo(name, '.git')) return 'a name that is .git on Windows or macOS (case, ignorable Unicode, trailing dots or spaces, streams, git~1; git refuses it)';
  if (foldsTo(name, '.mstore')) return 'a name reserved for the store (.mstore, in any case or spelling)';
  if (name.startsWith('.mstore-tmp-')) return "a name reserved for mstore's temporary files (.mstore-tmp-*)";
  if (symlink && foldsTo(name, '.gitmodules')) return 'a symlink named .gitmodules (git refuses it)';
  return null;
}

/**
 * The rule a version's file path (`/`-separated, relative, no `.mstore/` record) breaks, or
 * null: its first component that breaks nameProblem (the text names that component when the
 * path has several), or the whole path's length.
 */
export function pathProblem(p: string, opts: { symlink?: boolean } = {}): string | null {
  const parts = p.split('/');
  for (let i = 0; i < parts.length; i++) {
    const last = i === parts.length - 1;
    const problem = nameProblem(parts[i], { symlink: last && opts.symlink });
    if (problem) return parts.length > 1 ? `${problem}: ${showName(parts[i])}` : problem;
  }
  const bytes = Buffer.byteLength(p);
  if (bytes > MAX_PATH_BYTES) return `a path of ${bytes} bytes (at most ${MAX_PATH_BYTES})`;
  return null;
}

/**
 * A name or path for a one-line message: in single quotes, with backslashes doubled and
 * control characters, ignorable code points and the replacement character written as
 * `\n`, `\t`, `\u{200c}`..., so two different names never look alike.
 */
export function showName(name: string): string {
  const body = name.replace(/[\\\u0000-\u001f\u007f\u200c-\u200f\u202a-\u202e\u206a-\u206f\ufeff\ufffd]/g, (c) => {
    if (c === '\\') return '\\\\';
    if (c === '\n') return '\\n';
    if (c === '\t') return '\\t';
    if (c === '\r') return '\\r';
    return `\\u{${c.codePointAt(0)!.toString(16)}}`;
  });
  return `'${body}'`;
}
