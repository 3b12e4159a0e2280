import { reconcileDeploy } from '../../deploy/apply.js';
import type { CommandModule } from 'yargs';
import { readFile, realpath } from 'node:fs/promises';
import path from 'node:path';
import { MstoreError } from '../../lib/errors.js';
import { StoreRemote } from '../../remote/transport/path.js';
import { DEFAULT_MAX_BODY, startServer } from '../../remote/transport/http-server.js';
import { loadTokens } from '../../remote/transport/http-tokens.js';
import { DEFAULT_MAX_FETCH_BYTES } from '../../remote/transport/http-limits.js';
import { HUB_REPO_ID } from '../../remote/transport/http-hub.js';
import { HubView } from '../../ops/hub-view.js';
import { WebApp } from '../../web/app.js';
import { handler, out } from '../ui/output.js';
import { parseListen } from '../listen.js';

interface Args {
  store: string;
  listen: string;
  tokens: string;
  tlsCert?: string;
  tlsKey?: string;
  maxBody: string;
  maxFetchBytes: string;
  grace: number;
  hfRepo?: string;
}

/** A pushing client may wait this long for another writer (a push, gc) to release the store. */
const LOCK_WAIT_MS = 10 * 60_000;

/** Bytes, with an optional K/M/G/T suffix (powers of 1024; KiB, MB, ... accepted alike). */
function parseBytes(s: string, flag: string): number {
  const m = /^(\d+)\s*([kmgt]?)(?:i?b)?$/i.exec(s.trim());
  if (!m) throw new MstoreError('EUSAGE', `${flag} expects bytes like 1073741824 or 1G, got '${s}'`);
  return Number(m[1]) * 1024 ** ' kmgt'.indexOf((m[2] || ' ').toLowerCase());
}

/** A directory name made into a Hub repository name: other characters become '-'; 'models' when nothing is left. */
function hubRepoName(base: string): string {
  const name = base.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 96);
  return name || 'models';
}

export const serveCommand: CommandModule<object, Args> = {
  command: 'serve [store]',
  describe: 'Serve a bare store over HTTP(S) to push, pull and clone (bearer tokens with read/push/admin scopes)',
  builder: (y) =>
    y
      .positional('store', { type: 'string', default: '.', describe: 'the bare store directory (mstore init --bare DIR)' })
      .option('listen', { type: 'string', default: '127.0.0.1:8750', requiresArg: true, describe: 'HOST:PORT to listen on (port 0: any free port; 8750 by default, clear of the inference API on 8765)' })
      .option('tokens', { type: 'string', demandOption: true, requiresArg: true, describe: "file of 'SCOPE TOKEN' lines (scope read, push or admin; # comments)" })
      .option('tls-cert', { type: 'string', requiresArg: true, describe: 'PEM certificate (chain): serve HTTPS' })
      .option('tls-key', { type: 'string', requiresArg: true, describe: 'PEM private key of --tls-cert' })
      .option('max-body', { type: 'string', default: String(DEFAULT_MAX_BODY), requiresArg: true, describe: 'largest object-upload request body (bytes; K/M/G suffixes)' })
      .option('max-fetch-bytes', { type: 'string', default: String(DEFAULT_MAX_FETCH_BYTES), requiresArg: true, describe: 'payload bytes of one fetch answer; the client asks again for the rest (bytes; K/M/G suffixes)' })
      .option('grace', { type: 'number', default: 30, requiresArg: true, describe: 'seconds in-flight requests get to finish on SIGTERM/SIGINT' })
      .option('hf-repo', { type: 'string', requiresArg: true, describe: "the repository id the Hugging Face Hub API answers for (NAME or NAMESPACE/NAME; default: the store directory's name): docs/hf.md" })
      .example('$0 init --bare /srv/models && $0 serve /srv/models --listen 0.0.0.0:8750 --tokens /etc/mstore/tokens', 'serve a new bare store')
      .example('$0 serve /srv/models --listen 0.0.0.0:8443 --tokens tokens --tls-cert cert.pem --tls-key key.pem', 'HTTPS')
      .example('HF_ENDPOINT=http://box:8750 HF_TOKEN=… hf download team/models --revision production', 'a client reads a version through the Hub API (--hf-repo team/models)') as never,
  handler: handler(async (a) => {
    const listen = parseListen(a.listen);
    const maxBody = parseBytes(a.maxBody, '--max-body');
    const maxFetchBytes = parseBytes(a.maxFetchBytes, '--max-fetch-bytes');
    if (!Number.isFinite(a.grace) || a.grace < 0) throw new MstoreError('EUSAGE', '--grace expects a number of seconds');
    if (!a.tlsCert !== !a.tlsKey) throw new MstoreError('EUSAGE', '--tls-cert and --tls-key go together');
    const log = (line: string): void => {
      process.stderr.write(`${new Date().toISOString()} ${line}\n`);
    };
    const tokens = await loadTokens(a.tokens, (w) => log(`warning: ${w}`));
    let tls: { cert: Buffer; key: Buffer } | undefined;
    if (a.tlsCert && a.tlsKey) {
      const read = (f: string, flag: string): Promise<Buffer> =>
        readFile(f).catch((e: NodeJS.ErrnoException) => {
          throw new MstoreError('EBADINPUT', `${flag}: cannot read ${f}: ${e.code ?? e.message}`);
        });
      tls = { cert: await read(a.tlsCert, '--tls-cert'), key: await read(a.tlsKey, '--tls-key') };
    }
    const dir = path.resolve(a.store);
    const repoId = a.hfRepo ?? hubRepoName(path.basename(dir));
    if (!HUB_REPO_ID.test(repoId)) throw new MstoreError('EUSAGE', `--hf-repo expects NAME or NAMESPACE/NAME (letters, digits, '.', '_', '-'; at most 96 each), got '${repoId}'`);
    // Messages that reach clients name the store, never its path (docs/protocol.md §2.4).
    const remote = await StoreRemote.open(dir, { display: 'the served store', lockTimeoutMs: LOCK_WAIT_MS });
    const redact = [dir, await realpath(dir).catch(() => dir)];
    try {
      if (!remote.store.config.bare) throw new MstoreError('EBADINPUT', `${dir} is a workspace store; serve a bare one (mstore init --bare DIR, then push to it)`);
      // A deploy a crash cut short (the trigger ref ahead of what is live) finishes before pushes come in.
      const reconciled = await reconcileDeploy(remote.store, { onLine: (l) => log(l) }).catch((e: Error) => log(`deploy reconcile failed: ${e.message}`));
      if (reconciled) log(`deploy reconcile of ${reconciled.version}: ${reconciled.result}${reconciled.reason ? ` (${reconciled.reason})` : ''}`);
      // Signals are taken before listening, so one that arrives early still shuts down cleanly.
      let stop: () => void = () => undefined;
      const stopped = new Promise<string>((resolve) => {
        const on = (sig: string) => () => resolve(sig);
        process.once('SIGTERM', on('SIGTERM'));
        process.once('SIGINT', on('SIGINT'));
        stop = () => resolve('');
      });
      let server;
      try {
        const hub = { source: new HubView(remote.store), repoId };
        const web = new WebApp(remote.store, { secure: !!tls, redact, log });
        server = await startServer({ remote, tokens, host: listen.host, port: listen.port, tls, maxBody, maxFetchBytes, redact, format: remote.store.config.format, log, hub, web });
      } catch (e) {
        stop();
        throw e;
      }
      out(`mstore serve: listening on ${server.url}`);
      log(`Hugging Face Hub API for ${repoId} at ${server.url} (docs/hf.md); web view at ${server.url}/ui/ (docs/ui.md)`);
      const sig = await stopped;
      log(`${sig}: shutting down (in-flight requests get ${a.grace} s)`);
      await server.close(a.grace * 1000);
      log('stopped');
    } finally {
      await remote.close();
    }
  }),
};
