/**
 * `mstore ui` as a library: an HTTP server for the web view of a local store. It listens on a
 * loopback address (the store's owner's pages, with push scope and no login), or, with a
 * tokens file, anywhere with the login serve uses. It never prints; `close()` stops it.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { MstoreError } from '../lib/errors.js';
import type { Store } from '../repo/store.js';
import { tokenScope, type TokenEntry } from '../remote/transport/http-tokens.js';
import { WebApp } from './app.js';

export interface WebServerOptions {
  store: Store;
  host: string;
  port: number;
  /** Login with these tokens (required off loopback). */
  tokens?: TokenEntry[];
  log?: (line: string) => void;
}

export interface WebServer {
  readonly url: string;
  close(): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

export async function startWebServer(opts: WebServerOptions): Promise<WebServer> {
  if (!opts.tokens && !LOOPBACK.has(opts.host)) {
    throw new MstoreError('EUSAGE', `--listen ${opts.host}: without --tokens the web view listens on a loopback address only (127.0.0.1, ::1, localhost)`);
  }
  const tokens = opts.tokens;
  const scopeOf = tokens ? (t: string) => tokenScope(tokens, t) : undefined;
  const server = http.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(new MstoreError('EBADINPUT', `cannot listen on ${opts.host}:${opts.port}: ${e.code === 'EADDRINUSE' ? 'the address is in use (EADDRINUSE)' : e.code ?? e.message}`)),
    );
    server.listen(opts.port, opts.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const hostPart = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  const localHosts = [`${hostPart}:${port}`, `localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`];
  const app = new WebApp(opts.store, { localHosts, log: opts.log });
  const inFlight = new Set<Promise<unknown>>();
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const p = app.handle(req, res, scopeOf).finally(() => inFlight.delete(p));
    inFlight.add(p);
  });
  return {
    url: `http://${hostPart}:${port}`,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      await Promise.allSettled([...inFlight]);
    },
  };
}
