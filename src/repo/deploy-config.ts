/**
 * Deploy configuration of a serving store: `deploy.json` beside its config.json
 * (docs/deploy.md). Without the file, pushes never deploy. Every field but `root` and
 * `api.baseUrl` has a default matching the user's inference server (seed 002).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { MstoreError } from '../lib/errors.js';
import type { Store } from './store.js';

export const DEPLOY_FILE = 'deploy.json';

export interface ApiCall {
  method: string;
  /** Path under baseUrl; may hold placeholders. */
  path: string;
  /** JSON body template: every string may hold {version} {name} {path} {commit}. */
  body?: unknown;
}

export interface DeployConfig {
  /** The ref whose move triggers a deploy, under refs/heads/ (default `deployed`). */
  ref: string;
  /** Where versions are materialised: <root>/<version>/ and the <root>/current symlink. */
  root: string;
  /** The model name the inference API knows a version by (template). */
  name: string;
  /** How many deployed version directories to keep besides the live one. */
  keep: number;
  api: {
    baseUrl: string;
    /** Per request. */
    timeoutMs: number;
    /** Tries per call on connection errors and 5xx answers, with exponential backoff. */
    attempts: number;
    backoffMs: number;
    register: ApiCall;
    setActive: ApiCall;
    health: ApiCall & { expectStatus: number };
  };
}

export function defaultDeployConfig(root: string, baseUrl: string): DeployConfig {
  return {
    ref: 'deployed',
    root,
    name: 'mstore-{version}',
    keep: 3,
    api: {
      baseUrl,
      timeoutMs: 30_000,
      attempts: 4,
      backoffMs: 250,
      register: { method: 'POST', path: '/models/register', body: { name: '{name}', path: '{path}' } },
      setActive: { method: 'POST', path: '/models/set_active', body: { name: '{name}' } },
      health: { method: 'GET', path: '/health', expectStatus: 200 },
    },
  };
}

function fail(file: string, what: string): never {
  throw new MstoreError('EBADINPUT', `${file}: ${what}`);
}

/** The store's deploy configuration, or undefined when it has none. */
export async function readDeployConfig(store: Store): Promise<DeployConfig | undefined> {
  const file = path.join(store.dir, DEPLOY_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  let raw: Partial<DeployConfig> & { api?: Partial<DeployConfig['api']> };
  try {
    raw = JSON.parse(text) as typeof raw;
  } catch {
    fail(file, 'not valid JSON');
  }
  if (typeof raw.root !== 'string' || !raw.root) fail(file, '"root" (the deploy directory) is required');
  if (typeof raw.api?.baseUrl !== 'string' || !/^https?:\/\//.test(raw.api.baseUrl)) fail(file, '"api.baseUrl" (http(s)://host:port of the inference API) is required');
  const d = defaultDeployConfig(raw.root, raw.api.baseUrl);
  const cfg: DeployConfig = {
    ...d,
    ...raw,
    root: path.resolve(store.dir, raw.root),
    api: { ...d.api, ...raw.api, health: { ...d.api.health, ...raw.api.health } } as DeployConfig['api'],
  };
  if (!/^[A-Za-z0-9][A-Za-z0-9._/-]*$/.test(cfg.ref) || cfg.ref.includes('..') || cfg.ref.endsWith('/')) fail(file, `"ref" '${cfg.ref}' is not a valid ref name`);
  if (!Number.isInteger(cfg.keep) || cfg.keep < 1) fail(file, '"keep" must be an integer >= 1');
  for (const k of ['timeoutMs', 'attempts', 'backoffMs'] as const) {
    if (!Number.isInteger(cfg.api[k]) || cfg.api[k] < (k === 'backoffMs' ? 0 : 1)) fail(file, `"api.${k}" must be a positive integer`);
  }
  for (const k of ['register', 'setActive', 'health'] as const) {
    const c = cfg.api[k];
    if (typeof c?.method !== 'string' || typeof c.path !== 'string' || !c.path.startsWith('/')) fail(file, `"api.${k}" needs "method" and a "path" starting with /`);
  }
  return cfg;
}

/** The full trigger ref. */
export function triggerRef(cfg: Pick<DeployConfig, 'ref'>): string {
  return `refs/heads/${cfg.ref}`;
}

export interface TemplateValues {
  version: string;
  name: string;
  path: string;
  commit: string;
}

/** Replaces {version} {name} {path} {commit} in every string of a JSON value. */
export function render<T>(template: T, v: TemplateValues): T {
  const sub = (s: string): string => s.replace(/\{(version|name|path|commit)\}/g, (_, k: keyof TemplateValues) => v[k]);
  const walk = (x: unknown): unknown => {
    if (typeof x === 'string') return sub(x);
    if (Array.isArray(x)) return x.map(walk);
    if (x && typeof x === 'object') return Object.fromEntries(Object.entries(x).map(([k, val]) => [k, walk(val)]));
    return x;
  };
  return walk(template) as T;
}
