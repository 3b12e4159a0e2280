import type { CommandModule } from 'yargs';
import path from 'node:path';
import { readdir, rm, stat } from 'node:fs/promises';
import { Store } from '../../repo/store.js';
import { MstoreError } from '../../lib/errors.js';
import { checkout } from '../../ops/checkout.js';
import { addRemote } from '../../remote/config.js';
import { openRemote } from '../../remote/open.js';
import { pull } from '../../remote/pull.js';
import { formatBytes, handler, out, printJson, progressBar } from '../ui/output.js';

interface Args {
  url: string;
  dir?: string;
  tokenEnv?: string;
  endpoint?: string;
  region?: string;
  bare: boolean;
  checkout: boolean;
  json: boolean;
}

export const cloneCommand: CommandModule<object, Args> = {
  command: 'clone <url> [dir]',
  describe: "Create a store from a remote's versions (remote 'origin'), then check out latest",
  builder: (y) =>
    y
      .positional('url', { type: 'string', demandOption: true, describe: 'a path, file://, http(s)://HOST:PORT or s3://BUCKET/PREFIX' })
      .positional('dir', { type: 'string', describe: 'new directory (default: the last part of the URL)' })
      .option('token-env', { type: 'string', requiresArg: true, describe: 'environment variable holding the bearer token (HTTP)' })
      .option('endpoint', { type: 'string', requiresArg: true, describe: 'S3 endpoint URL (default: AWS_ENDPOINT_URL)' })
      .option('region', { type: 'string', requiresArg: true, describe: 'S3 region (default: AWS_REGION)' })
      .option('bare', { type: 'boolean', default: false, describe: 'a bare store (no workspace, no checkout)' })
      .option('checkout', { type: 'boolean', default: true, describe: 'check out latest (--no-checkout: only fetch)' })
      .option('json', { type: 'boolean', default: false })
      .example('$0 clone http://box:8750 models --token-env MSTORE_TOKEN', 'every version from the inference box')
      .example('$0 clone /mnt/nas/models-store work --no-checkout', 'fetch only') as never,
  handler: handler(async (a) => {
    const dir = path.resolve(a.dir ?? (path.basename(a.url.replace(/\/+$/, '')) || 'store'));
    const st = await stat(dir).catch(() => undefined);
    if (st && (!st.isDirectory() || (await readdir(dir)).length > 0)) throw new MstoreError('EEXISTS', `${dir} exists and is not an empty directory`);
    const store = await Store.init(dir, { bare: a.bare });
    let ok = false;
    try {
      await addRemote(store, 'origin', a.url, { tokenEnv: a.tokenEnv, endpoint: a.endpoint, region: a.region });
      const { remote } = await openRemote(store, 'origin');
      const bar = progressBar('clone');
      let r;
      try {
        r = await pull(store, remote, { onProgress: bar.update });
      } finally {
        bar.stop();
        await remote.close();
      }
      let checkedOut: string | undefined;
      if (!a.bare && a.checkout && (await store.repo.readRef('refs/heads/latest'))) {
        const c = await checkout(store, { rev: 'latest', cwd: dir, patterns: [], force: false });
        checkedOut = c.version ?? c.commit;
      }
      ok = true;
      if (a.json) return printJson({ dir, store: store.dir, ...r, checkedOut: checkedOut ?? null });
      out(`Cloned ${r.remote} into ${dir}: ${r.refs.length} refs, ${formatBytes(r.bytesReceived)} received, verified${checkedOut ? `; checked out ${checkedOut}` : ''}`);
    } finally {
      await store.close();
      // Like git: a clone that failed leaves no half-made directory behind.
      if (!ok) await rm(dir, { recursive: true, force: true });
    }
  }),
};
