import type { CommandModule } from 'yargs';
import { pull } from '../../remote/pull.js';
import { openRemote } from '../../remote/open.js';
import { dim, formatBytes, handler, out, printJson, progressBar, withStore } from '../ui/output.js';

interface Args {
  remote: string;
  refs: string[];
  force: boolean;
  json: boolean;
}

const short = (ref: string): string => ref.replace(/^refs\/(tags|heads)\//, '');

export const pullCommand: CommandModule<object, Args> = {
  command: 'pull <remote> [refs..]',
  describe: "Fetch versions from a remote (only what this store lacks, verified) and update local refs",
  builder: (y) =>
    y
      .positional('remote', { type: 'string', demandOption: true, describe: 'a remote name or a URL/path' })
      .positional('refs', { type: 'string', array: true, default: [], describe: 'versions or refs (default: every ref of the remote)' })
      .option('force', { type: 'boolean', default: false, describe: 'move local refs even when not a fast-forward' })
      .option('json', { type: 'boolean', default: false })
      .example('$0 pull box', 'every version the box has')
      .example('$0 pull team v007', 'one version (and latest, if it is the newest)') as never,
  handler: handler(async (a) => {
    await withStore(async (store) => {
      const { remote } = await openRemote(store, a.remote);
      const bar = progressBar('pull');
      try {
        const r = await pull(store, remote, { refs: a.refs, force: a.force, onProgress: bar.update });
        bar.stop();
        if (a.json) return printJson(r);
        if (r.upToDate) out(`Already up to date with ${r.remote}`);
        else {
          out(`From ${r.remote}: ${r.chunksReceived} chunks, ${r.filesReceived} files, ${r.gitObjectsReceived} git objects (${formatBytes(r.bytesReceived)}), verified`);
          for (const e of r.refs) out(`  ${e.old ? `${e.old.slice(0, 7)}..${e.new?.slice(0, 7)}` : '[new]'}\t${short(e.ref)}`);
        }
        for (const s of r.skipped) out(dim(`  skipped ${short(s.ref)}: ${s.reason}`));
      } finally {
        bar.stop();
        await remote.close();
      }
    });
  }),
};
