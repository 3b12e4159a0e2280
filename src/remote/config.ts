/**
 * Named remotes, in `remotes.json` of the store (docs/format.md): name -> URL, the name of
 * the environment variable holding its token (never the token itself), and S3 settings.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Store } from '../repo/store.js';
import { MstoreError } from '../lib/errors.js';
import { atomicWriteFile } from '../lib/fsutil.js';
import { now } from '../lib/clock.js';

export const REMOTES_FILE = 'remotes.json';

export interface RemoteConfig {
  url: string;
  /** Environment variable the bearer token is read from (HTTP). */
  tokenEnv?: string;
  /** S3: endpoint and region (else AWS_ENDPOINT_URL / AWS_REGION). */
  endpoint?: string;
  region?: string;
  added: string;
}

export interface RemotesFile {
  remotes: Record<string, RemoteConfig>;
}

export async function readRemotes(store: Store): Promise<RemotesFile> {
  const file = path.join(store.dir, REMOTES_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { remotes: {} };
    throw e;
  }
  try {
    const r = JSON.parse(text) as RemotesFile;
    if (typeof r.remotes !== 'object' || r.remotes === null) throw new Error('no remotes object');
    return r;
  } catch {
    throw new MstoreError('ECORRUPT', `${file} is not valid JSON`);
  }
}

export function checkRemoteName(name: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) throw new MstoreError('EBADNAME', `invalid remote name '${name}' (letters, digits, . _ -)`);
}

/** What kind of place a URL names; a plain path (or file://) is another store on this machine. */
export function urlKind(url: string): 'path' | 'http' | 's3' {
  if (/^https?:\/\//i.test(url)) return 'http';
  if (/^s3:\/\//i.test(url)) return 's3';
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url) && !/^file:\/\//i.test(url)) {
    throw new MstoreError('EUSAGE', `unsupported remote URL scheme in '${url.replace(/\/\/[^@/]*@/, '//')}' (use a path, file://, http(s):// or s3://)`);
  }
  return 'path';
}

export async function addRemote(store: Store, name: string, url: string, extra: { tokenEnv?: string; endpoint?: string; region?: string } = {}): Promise<RemoteConfig> {
  checkRemoteName(name);
  if (/^[a-z][a-z0-9+.-]*:\/\/[^/@]*@/i.test(url)) throw new MstoreError('EUSAGE', 'put credentials in an environment variable (--token-env VAR), not in the URL');
  const kind = urlKind(url);
  if (extra.tokenEnv !== undefined && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(extra.tokenEnv)) throw new MstoreError('EUSAGE', `--token-env takes an environment variable name, got '${extra.tokenEnv}'`);
  const stored = kind === 'path' ? path.resolve(url.replace(/^file:\/\//i, '')) : url;
  return store.withLock('remote', async () => {
    const r = await readRemotes(store);
    if (r.remotes[name]) throw new MstoreError('EEXISTS', `remote '${name}' already exists (${r.remotes[name].url})`);
    const cfg: RemoteConfig = { url: stored, ...extra, added: now().toISOString() };
    for (const k of Object.keys(cfg) as (keyof RemoteConfig)[]) if (cfg[k] === undefined) delete cfg[k];
    r.remotes[name] = cfg;
    await atomicWriteFile(path.join(store.dir, REMOTES_FILE), `${JSON.stringify(r, null, 2)}\n`);
    return cfg;
  });
}

export async function removeRemote(store: Store, name: string): Promise<void> {
  await store.withLock('remote', async () => {
    const r = await readRemotes(store);
    if (!r.remotes[name]) throw new MstoreError('ENOTFOUND', `no remote named '${name}'`, { what: name });
    delete r.remotes[name];
    await atomicWriteFile(path.join(store.dir, REMOTES_FILE), `${JSON.stringify(r, null, 2)}\n`);
  });
}
