import type { CommandModule } from 'yargs';
import { materialize } from '../../ops/materialize.js';
import { dim, formatBytes, handler, out, printJson, progressBar, withStore } from '../ui/output.js';

interface Args {
  rev: string;
  json: boolean;
}

export const materializeCommand: CommandModule<object, Args> = {
  command: 'materialize <rev>',
  describe: 'Store the bytes of a version\'s files kept as recipes (rebuilt and verified), so it no longer needs their base and adapter',
  builder: (y) =>
    y
      .positional('rev', { type: 'string', demandOption: true, describe: 'the version' })
      .option('json', { type: 'boolean', default: false })
      .example('$0 materialize merged/v002', 'store merged/v002 as bytes; gc can then free a base only its recipes needed') as never,
  handler: handler(async (a) => {
    await withStore(async (store) => {
      const bar = process.stderr.isTTY && !a.json ? progressBar('rebuild') : undefined;
      const r = await materialize(store, a.rev, { onProgress: bar?.update }).finally(() => bar?.stop());
      if (a.json) return printJson(r);
      if (!r.files.length) return out(dim(`${a.rev}: nothing is kept as a recipe; nothing to do`));
      out(`${a.rev}: ${r.files.length} file(s) rebuilt, verified and stored as bytes (${formatBytes(r.bytes)}, ${formatBytes(r.newBytes)} new)`);
    });
  }),
};
