/** From a remote's name or URL to a Remote: another store's path, `mstore serve`, or S3. */
import path from 'node:path';
import type { Store } from '../repo/store.js';
import { MstoreError } from '../lib/errors.js';
import type { Remote } from './remote.js';
import { readRemotes, urlKind, type RemoteConfig } from './config.js';

export interface OpenedRemote {
  remote: Remote;
  /** The configured name, when one was used. */
  name?: string;
  url: string;
}

/** Opens a URL with its settings; the token comes from the environment variable named in `cfg`. */
export async function openUrl(url: string, cfg: Partial<RemoteConfig> = {}, cacheDir?: string): Promise<Remote> {
  const kind = urlKind(url);
  if (kind === 'path') {
    const { StoreRemote } = await import('./transport/path.js');
    return StoreRemote.open(path.resolve(url.replace(/^file:\/\//i, '')));
  }
  if (kind === 'http') {
    const token = cfg.tokenEnv ? process.env[cfg.tokenEnv] : undefined;
    if (cfg.tokenEnv && !token) throw new MstoreError('EAUTH', `the token variable ${cfg.tokenEnv} for ${url} is not set`);
    const { HttpRemote } = await import('./transport/http-client.js');
    return new HttpRemote(url, { token });
  }
  const { openS3Remote } = await import('./transport/s3.js');
  return openS3Remote(url, { endpoint: cfg.endpoint, region: cfg.region, cacheDir });
}

/** A configured remote by name, else the argument as a URL or path. */
export async function openRemote(store: Store, nameOrUrl: string): Promise<OpenedRemote> {
  const { remotes } = await readRemotes(store);
  const cfg = remotes[nameOrUrl];
  if (cfg) return { remote: await openUrl(cfg.url, cfg, path.join(store.dir, 'remotes', nameOrUrl)), name: nameOrUrl, url: cfg.url };
  const looksLikeUrl = /^[a-z][a-z0-9+.-]*:\/\//i.test(nameOrUrl) || nameOrUrl.includes('/') || nameOrUrl.startsWith('.');
  if (!looksLikeUrl) {
    const names = Object.keys(remotes);
    throw new MstoreError('ENOTFOUND', `no remote named '${nameOrUrl}'${names.length ? ` (remotes: ${names.join(', ')})` : " (add one with 'mstore remote add NAME URL')"}`, { what: nameOrUrl });
  }
  return { remote: await openUrl(nameOrUrl), url: nameOrUrl };
}
