import type { CommandModule } from 'yargs';
import { readFile } from 'node:fs/promises';
import { MstoreError } from '../../lib/errors.js';
import { commit } from '../../ops/commit.js';
import { formatBytes, handler, out, parseKeyValues, printJson, progressBar, warn, withStore } from '../ui/output.js';

interface Args {
  paths: string[];
  message: string;
  meta?: string[];
  params?: string;
  metrics?: string;
  status?: string;
  line?: string;
  'training-data'?: string[];
  'allow-empty': boolean;
  json: boolean;
}

async function readJsonObject(file: string, flag: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new MstoreError('EBADINPUT', `${flag}: cannot read ${file}: ${(e as NodeJS.ErrnoException).code}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new MstoreError('EBADINPUT', `${flag}: ${file} is not valid JSON (${(e as Error).message})`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new MstoreError('EBADINPUT', `${flag}: ${file} must hold a JSON object`);
  return v as Record<string, unknown>;
}

export const commitCommand: CommandModule<object, Args> = {
  command: 'commit [paths..]',
  describe: 'Record the workspace (or some paths) as the next version',
  builder: (y) =>
    y
      .positional('paths', { type: 'string', array: true, default: [], describe: 'only these files or directories change' })
      .option('message', { alias: 'm', type: 'string', requiresArg: true, demandOption: true, describe: 'description of the version' })
      .option('meta', { type: 'string', requiresArg: true, array: true, describe: 'KEY=VALUE metadata (repeatable; JSON values kept typed)' })
      .option('params', { type: 'string', requiresArg: true, describe: 'JSON file of training parameters' })
      .option('metrics', { type: 'string', requiresArg: true, describe: 'JSON file of metrics' })
      .option('training-data', { type: 'string', requiresArg: true, array: true, describe: 'training data files used (repeatable)' })
      .option('status', { type: 'string', requiresArg: true, describe: 'draft | pending | training | completed | failed' })
      .option('line', { type: 'string', requiresArg: true, describe: 'version line (default: main, tags vNNN)' })
      .option('allow-empty', { type: 'boolean', default: false, describe: 'record a version even if nothing changed' })
      .option('json', { type: 'boolean', default: false })
      .example('$0 commit -m "math 10k" --metrics metrics.json', 'snapshot the workspace as the next vNNN')
      .example('$0 commit adapter/ -m "adapter only" --line adapters', 'commit one directory on line adapters') as never,
  handler: handler(async (a) => {
    const params = a.params ? await readJsonObject(a.params, '--params') : undefined;
    const metrics = a.metrics ? await readJsonObject(a.metrics, '--metrics') : undefined;
    const meta = parseKeyValues(a.meta, '--meta');
    await withStore(async (store) => {
      const bar = progressBar('commit');
      let r;
      try {
        r = await commit(store, {
          cwd: process.cwd(),
          message: a.message,
          paths: a.paths,
          line: a.line,
          meta,
          params,
          metrics,
          trainingData: a['training-data'],
          status: a.status,
          allowEmpty: a['allow-empty'],
          onProgress: bar.update,
        });
      } finally {
        bar.stop();
      }
      for (const w of r.warnings) warn(w);
      if (a.json) return printJson(r);
      if (!r.changed) return out(`nothing changed since ${r.version ?? 'the last version'}; no version created`);
      out(`${r.version} ${r.commit!.slice(0, 12)}  ${a.message}`);
      out(
        ` ${r.files} files, ${formatBytes(r.totalBytes)}; ${formatBytes(r.newBytes)} newly stored` +
          ` (${r.added.length} added, ${r.modified.length} modified, ${r.deleted.length} deleted)`,
      );
    });
  }),
};
