import type { CommandModule } from 'yargs';
import { exportVersions } from '../../ops/archive/export.js';
import { EXPORT_FORMATS, type ExportFormat } from '../../format/bundle.js';
import { formatBytes, handler, out, printJson, progressBar, warn, withStore } from '../ui/output.js';

interface Args {
  revs: string[];
  output: string;
  format: ExportFormat;
  json: boolean;
}

export const exportCommand: CommandModule<object, Args> = {
  command: 'export <revs..>',
  describe: 'Write versions to a tar file: a bundle for mstore import, or plain model directories',
  builder: (y) =>
    y
      .positional('revs', { type: 'string', array: true, demandOption: true, describe: 'versions to export (v003, merged/latest, a tag, ...)' })
      .option('output', { alias: 'o', type: 'string', requiresArg: true, demandOption: true, describe: 'the tar file to write (replaced if it exists)' })
      .option('format', {
        type: 'string',
        choices: EXPORT_FORMATS as ExportFormat[],
        default: 'bundle' as ExportFormat,
        requiresArg: true,
        describe: 'bundle: store objects, same ids after import; files: one directory per version',
      })
      .option('json', { type: 'boolean', default: false })
      .example('$0 export v001 v002 v003 -o models.tar', 'a bundle: mstore import recreates the versions with the same ids')
      .example('$0 export production --format files -o prod.tar', 'the model directory plus .mstore/version.json, for tar and other tools') as never,
  handler: handler(async (a) => {
    await withStore(async (store) => {
      const bar = progressBar('export');
      let r;
      try {
        r = await exportVersions(store, { revs: a.revs, output: a.output, format: a.format, onProgress: (p) => bar.update({ phase: 'checkout', ...p }) });
      } finally {
        bar.stop();
      }
      for (const w of r.warnings) warn(w);
      if (a.json) return printJson(r);
      const what = r.format === 'bundle' ? `${r.gitObjects} git objects, ${r.manifests} files, ${r.chunks} chunks` : `${r.entries} entries`;
      out(`exported ${r.versions.map((v) => v.name).join(', ')} to ${a.output} (${r.format}): ${formatBytes(r.bytes)}, ${what}`);
    });
  }),
};
