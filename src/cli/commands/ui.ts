/** `mstore ui`: the web view of the store found from the current directory (docs/ui.md). */
import type { CommandModule } from 'yargs';
import { spawn } from 'node:child_process';
import { Store } from '../../repo/store.js';
import { loadTokens } from '../../remote/transport/http-tokens.js';
import { startWebServer } from '../../web/server.js';
import { handler, out, warn } from '../ui/output.js';
import { parseListen } from '../listen.js';

interface Args {
  listen: string;
  open: boolean;
  tokens?: string;
}

/** The system's "open this URL" command; a failure to start it is a warning, not an error. */
function openBrowser(url: string): void {
  const [cmd, args] = process.platform === 'darwin' ? ['open', [url]] : process.platform === 'win32' ? ['cmd', ['/c', 'start', '', url]] : ['xdg-open', [url]];
  const child = spawn(cmd, args, { stdio: 'ignore', detached: true });
  child.on('error', (e) => warn(`could not open a browser (${cmd}: ${e.message}); open ${url}`));
  child.unref();
}

export const uiCommand: CommandModule<object, Args> = {
  command: 'ui',
  describe: 'Browse the store in a web browser: versions, statuses, metrics, curves, diffs, deploys (docs/ui.md)',
  builder: (y) =>
    y
      .option('listen', { type: 'string', default: '127.0.0.1:8751', requiresArg: true, describe: 'HOST:PORT (a loopback address unless --tokens; port 0: any free port)' })
      .option('open', { type: 'boolean', default: false, describe: 'open the page in the default browser' })
      .option('tokens', { type: 'string', requiresArg: true, describe: "require a login with a token of this file ('SCOPE TOKEN' lines, as serve)" })
      .example('$0 ui --open', 'browse this store at http://127.0.0.1:8751/ui/')
      .example('$0 ui --listen 0.0.0.0:8751 --tokens tokens', 'share it on the network, behind a login') as never,
  handler: handler(async (a) => {
    const listen = parseListen(a.listen);
    const log = (line: string): void => {
      process.stderr.write(`${new Date().toISOString()} ${line}\n`);
    };
    const tokens = a.tokens ? await loadTokens(a.tokens, (w) => log(`warning: ${w}`)) : undefined;
    const store = await Store.find(process.cwd());
    try {
      let stop: () => void = () => undefined;
      const stopped = new Promise<void>((resolve) => {
        process.once('SIGTERM', () => resolve());
        process.once('SIGINT', () => resolve());
        stop = resolve;
      });
      let server;
      try {
        server = await startWebServer({ store, host: listen.host, port: listen.port, tokens, log });
      } catch (e) {
        stop();
        throw e;
      }
      const url = `${server.url}/ui/`;
      out(`mstore ui: listening on ${url}`);
      if (a.open) openBrowser(url);
      await stopped;
      await server.close();
    } finally {
      await store.close();
    }
  }),
};
