/**
 * The read side of the Hugging Face Hub HTTP API, as `mstore serve` answers it (docs/hf.md):
 * enough for huggingface_hub (snapshot_download, hf_hub_download, `hf download`) and for
 * transformers' from_pretrained with HF_ENDPOINT pointing at the server. Routes, for the one
 * repository id the server was given:
 *   GET /api/models/{repo}[/revision/{rev}]          the revision's sha and files (siblings)
 *   GET /api/models/{repo}/tree/{rev}[/{path}]       files and folders (recursive=true: all below)
 *   HEAD, GET /{repo}/resolve/{rev}/{path}           a file (Range: bytes=N-[M] gives 206)
 * Revisions are URL-encoded path segments (the client encodes '/' as %2F). Errors carry the
 * Hub's X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound), which the client maps to
 * its own exceptions; a missing file's answer names the revision's commit (X-Repo-Commit), as
 * transformers' probes of optional files expect. This module parses and answers; what a
 * revision holds, and the verified bytes, come from the HubSource the server is given.
 */
import { HttpError } from './http-limits.js';

export interface HubSourceFile {
  path: string;
  size: number;
  blob: string;
  lfs?: { oid: string; size: number; pointerSize: number };
}

/** What the server reads a store through (ops/hub-view.ts). */
export interface HubSource {
  revision(rev: string): Promise<{ commit: string; date: string; files: HubSourceFile[]; folders: { path: string; tree: string }[] }>;
  read(file: HubSourceFile, start: number, end: number): AsyncIterable<Buffer>;
}

export type HubRequest =
  | { kind: 'info'; rev: string }
  | { kind: 'tree'; rev: string; path: string; recursive: boolean }
  | { kind: 'file'; rev: string; path: string };

/** How the server answers (its accounting and error handling stay its own). */
export interface HubReply {
  json(status: number, value: unknown, headers?: Record<string, string>): void;
  stream(status: number, headers: Record<string, string>, body: AsyncIterable<Buffer> | undefined): Promise<void>;
}

/** The Hub's default branch (the HubSource maps it to the default line's head). */
const DEFAULT_REVISION = 'main';

/** A repository id as the Hub spells one: a name, or a namespace and a name. */
export const HUB_REPO_ID = /^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,95}\/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}$/;

function hubError(status: number, code: string, message: string, headers: Record<string, string> = {}): HttpError {
  const clean = message.replace(/[^\x20-\x7e]/g, '?').slice(0, 300);
  return new HttpError(status, status === 404 ? 'ENOTFOUND' : 'EBADINPUT', message, { 'x-error-code': code, 'x-error-message': clean, ...headers });
}

/** Whether a request target is shaped like a Hub route (/api/models/…, /…/resolve/…); checked before the token, parsed after. */
export function looksLikeHubTarget(target: string): boolean {
  const q = target.indexOf('?');
  const raw = (q < 0 ? target : target.slice(0, q)).slice(1).split('/');
  const resolveAt = raw.indexOf('resolve');
  return target.startsWith('/') && ((raw[0] === 'api' && raw[1] === 'models') || resolveAt === 1 || resolveAt === 2);
}

/**
 * The Hub request a target names, undefined when it is not a Hub route (the server's own
 * routes then answer). A Hub route for another repository is a RepoNotFound error.
 */
export function parseHubRequest(target: string, repoId: string): HubRequest | undefined {
  const q = target.indexOf('?');
  const rawPath = q < 0 ? target : target.slice(0, q);
  if (!rawPath.startsWith('/') || rawPath.length > 4096) return undefined;
  const raw = rawPath.slice(1).split('/');
  const api = raw[0] === 'api' && raw[1] === 'models';
  const resolveAt = raw.indexOf('resolve');
  if (!api && resolveAt !== 1 && resolveAt !== 2) return undefined;
  let seg: string[];
  try {
    seg = raw.map((s) => decodeURIComponent(s));
  } catch {
    throw hubError(400, 'BadRequest', 'the request path is not valid percent-encoded UTF-8');
  }
  if (seg.some((s) => /[\x00-\x1f\x7f]/.test(s))) throw hubError(400, 'BadRequest', 'the request path holds control characters');
  const repo = repoId.split('/');
  const rest = api ? seg.slice(2) : seg;
  const ours = repo.every((part, i) => rest[i] === part);
  const after = rest.slice(repo.length);
  if (!ours || (!api && after[0] !== 'resolve')) throw hubError(404, 'RepoNotFound', `repository not found: ${rest.slice(0, repo.length).join('/')} (this server serves ${repoId})`);
  const params = new URLSearchParams(q < 0 ? '' : target.slice(q + 1));
  if (api) {
    if (after.length === 0) return { kind: 'info', rev: DEFAULT_REVISION };
    if (after[0] === 'revision' && after.length === 2 && after[1]) return { kind: 'info', rev: after[1] };
    if (after[0] === 'tree' && after.length >= 2 && after[1]) {
      const recursive = /^(?:true|1)$/i.test(params.get('recursive') ?? '');
      return { kind: 'tree', rev: after[1], path: after.slice(2).join('/').replace(/\/+$/, ''), recursive };
    }
    throw hubError(404, 'EntryNotFound', 'no such Hub API route');
  }
  if (after.length < 3 || !after[1] || after.slice(2).some((s) => !s)) throw hubError(404, 'EntryNotFound', 'a resolve URL names a revision and a file');
  return { kind: 'file', rev: after[1], path: after.slice(2).join('/') };
}

/** A single byte range of a file of `size` bytes: [start, end), or undefined for the whole file; 416 when unsatisfiable. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | undefined {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  const unsatisfiable = (): HttpError => new HttpError(416, 'EBADINPUT', `range ${header.slice(0, 100)} is not satisfiable for ${size} bytes`, { 'content-range': `bytes */${size}` });
  if (!m || (!m[1] && !m[2])) {
    if (/^bytes=/.test(header.trim())) throw unsatisfiable(); // several ranges, or a malformed one
    return undefined; // another unit: ignored, as RFC 9110 allows
  }
  if (!m[1]) {
    const n = Number(m[2]); // the last n bytes
    if (n === 0) throw unsatisfiable();
    return { start: Math.max(0, size - n), end: size };
  }
  const start = Number(m[1]);
  const end = m[2] ? Math.min(Number(m[2]) + 1, size) : size;
  if (!Number.isSafeInteger(start) || start >= size || end <= start) throw unsatisfiable();
  return { start, end };
}

/** Answers one Hub request (the token was checked by the server). */
export async function answerHub(r: HubRequest, method: string, rangeHeader: string | undefined, hub: HubSource, repoId: string, reply: HubReply): Promise<void> {
  let rev: Awaited<ReturnType<HubSource['revision']>>;
  try {
    rev = await hub.revision(r.rev);
  } catch (e) {
    if ((e as { code?: string }).code === 'EUNKNOWNREV') throw hubError(404, 'RevisionNotFound', `revision not found: ${r.rev}`);
    throw e;
  }
  const commit = { 'x-repo-commit': rev.commit };
  if (r.kind === 'info') {
    reply.json(200, {
      _id: rev.commit,
      id: repoId,
      modelId: repoId,
      sha: rev.commit,
      lastModified: rev.date,
      createdAt: rev.date,
      private: true,
      disabled: false,
      gated: false,
      tags: [],
      siblings: rev.files.map((f) => ({ rfilename: f.path })),
    }, commit);
    return;
  }
  if (r.kind === 'tree') {
    const base = r.path ? `${r.path}/` : '';
    if (r.path && !rev.folders.some((d) => d.path === r.path)) throw hubError(404, 'EntryNotFound', `no folder ${r.path} in revision ${r.rev}`, commit);
    const below = (p: string): boolean => p.startsWith(base) && (r.recursive || !p.slice(base.length).includes('/'));
    const entries = [
      ...rev.folders.filter((d) => below(d.path)).map((d) => ({ type: 'directory', oid: d.tree, size: 0, path: d.path })),
      ...rev.files.filter((f) => below(f.path)).map((f) => ({ type: 'file', oid: f.blob, size: f.size, path: f.path, ...(f.lfs ? { lfs: f.lfs } : {}) })),
    ].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    reply.json(200, entries, commit);
    return;
  }
  const file = rev.files.find((f) => f.path === r.path);
  if (!file) throw hubError(404, 'EntryNotFound', `no file ${r.path} in revision ${r.rev}`, commit);
  // The Hub's ETag: the sha256 of a git-lfs file, the git blob id of any other.
  const etag = `"${file.lfs ? file.lfs.oid : file.blob}"`;
  const range = parseRange(rangeHeader, file.size);
  const headers: Record<string, string> = {
    ...commit,
    etag,
    'x-linked-etag': etag,
    'x-linked-size': String(file.size),
    'accept-ranges': 'bytes',
    'content-type': 'application/octet-stream',
    'cache-control': 'no-store',
  };
  const start = range?.start ?? 0;
  const end = range?.end ?? file.size;
  headers['content-length'] = String(end - start);
  if (range) headers['content-range'] = `bytes ${start}-${end - 1}/${file.size}`;
  await reply.stream(range ? 206 : 200, headers, method === 'HEAD' || end === start ? undefined : hub.read(file, start, end));
}
