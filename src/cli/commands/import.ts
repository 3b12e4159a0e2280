import type { CommandModule } from 'yargs';
import { importArchive } from '../../ops/archive/import.js';
import { formatBytes, handler, out, printJson, progressBar, withStore } from '../ui/output.js';

interface Args {
  file: string;
  line?: string;
  json: boolean;
}

export const importCommand: CommandModule<object, Args> = {
  command: 'import <file>',
  describe: 'Add the versions of a tar file made by mstore export (checked in full before anything is written)',
  builder: (y) =>
    y
      .positional('file', { type: 'string', demandOption: true, describe: 'a bundle or files tar from mstore export' })
      .option('line', { type: 'string', requiresArg: true, describe: 'files layout only: commit every version on this line (default: its own)' })
      .option('json', { type: 'boolean', default: false })
      .example('$0 import models.tar', 'a bundle: the same versions, tags and ids as in the exporting store')
      .example('$0 import prod.tar --line imported', 'a files tar: each directory becomes a new version of line imported') as never,
  handler: handler(async (a) => {
    await withStore(async (store) => {
      const bar = progressBar('import');
      let r;
      try {
        r = await importArchive(store, { file: a.file, line: a.line, onProgress: (p) => bar.update({ phase: 'store', ...p }) });
      } finally {
        bar.stop();
      }
      if (a.json) return printJson(r);
      if (r.format === 'bundle') {
        const count = (k: string): number => r.refs.filter((x) => x.action === k).length;
        out(`imported ${r.versions.map((v) => v.name).join(', ')} from ${a.file} (bundle), verified ${formatBytes(r.verifiedBytes)}`);
        out(` refs: ${count('created')} created, ${count('fast-forward')} fast-forwarded, ${count('unchanged')} unchanged; ${formatBytes(r.newBytes)} newly stored`);
        return;
      }
      for (const v of r.versions) out(`${v.from} -> ${v.name} ${v.commit.slice(0, 12)}`);
      out(`imported ${r.versions.length} version(s) from ${a.file} (files); ${formatBytes(r.newBytes)} newly stored`);
    });
  }),
};
