import type { CommandModule } from 'yargs';
import { push } from '../../remote/push.js';
import { openRemote } from '../../remote/open.js';
import { dim, formatBytes, handler, out, printJson, progressBar, withStore } from '../ui/output.js';

interface Args {
  remote: string;
  revs: string[];
  force: boolean;
  json: boolean;
}

const short = (ref: string): string => ref.replace(/^refs\/(tags|heads)\//, '');

export const pushCommand: CommandModule<object, Args> = {
  command: 'push <remote> [revs..]',
  describe: 'Send versions to a remote (only what it lacks) and move its refs together',
  builder: (y) =>
    y
      .positional('remote', { type: 'string', demandOption: true, describe: 'a remote name (mstore remote add) or a URL/path' })
      .positional('revs', { type: 'string', array: true, default: [], describe: 'versions or refs (default: every ref)' })
      .option('force', { type: 'boolean', default: false, describe: 'move refs even when not a fast-forward (never skips the compare-and-swap)' })
      .option('json', { type: 'boolean', default: false })
      .example('$0 push box', 'every version, tag and latest')
      .example('$0 push box v004', 'v004 with its history; latest moves along when v004 is the newest')
      .example('$0 push nas exp/v002 --json', 'a version of line exp; the report as JSON') as never,
  handler: handler(async (a) => {
    await withStore(async (store) => {
      const { remote } = await openRemote(store, a.remote);
      const bar = progressBar('push');
      try {
        const r = await push(store, remote, {
          revs: a.revs,
          force: a.force,
          onProgress: bar.update,
          onRemoteOutput: (line) => process.stderr.write(`remote: ${line}\n`),
        });
        bar.stop();
        if (a.json) return printJson(r);
        if (r.upToDate) out(`Everything up to date with ${r.remote}`);
        else {
          out(`To ${r.remote}: ${r.chunksSent} chunks, ${r.filesSent} files, ${r.gitObjectsSent} git objects (${formatBytes(r.bytesSent)})`);
          for (const u of r.refs) out(`  ${u.old ? `${u.old.slice(0, 7)}..${u.new?.slice(0, 7) ?? 'deleted'}` : '[new]'}\t${short(u.ref)}`);
        }
        for (const s of r.skipped) out(dim(`  skipped ${short(s.ref)}: ${s.reason}`));
      } finally {
        bar.stop();
        await remote.close();
      }
    });
  }),
};
