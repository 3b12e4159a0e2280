import type { CommandModule } from 'yargs';
import { consolidate } from '../store/consolidate.js';
import { dim, handler, out, printJson, withStore } from './ui.js';

interface Args {
  base: string;
  adapter: string;
  message?: string;
  line?: string;
  worker: 'auto' | 'python' | 'builtin';
  python?: string;
  json: boolean;
}

export const consolidateCommand: CommandModule<object, Args> = {
  command: 'consolidate',
  describe: 'Merge an adapter version into a base version (verify, backup, hook, validate) and record it as a new version',
  builder: (y) =>
    y
      .option('base', { type: 'string', demandOption: true, requiresArg: true, describe: 'REV or REV:PATH of the base model' })
      .option('adapter', { type: 'string', demandOption: true, requiresArg: true, describe: 'REV or REV:PATH of the LoRA adapter' })
      .option('message', { alias: 'm', type: 'string', requiresArg: true, describe: 'description (default: merge ADAPTER into BASE)' })
      .option('line', { type: 'string', requiresArg: true, describe: 'line of the merged version (default: merged)' })
      .option('worker', { choices: ['auto', 'python', 'builtin'] as const, default: 'auto' as const, describe: 'auto: torch on a GPU when present, else built-in' })
      .option('python', { type: 'string', requiresArg: true, describe: 'Python interpreter for the torch worker (default: $MSTORE_PYTHON or python3)' })
      .option('json', { type: 'boolean', default: false })
      .example('$0 consolidate --base base/v001 --adapter v003', 'merge v003 (an adapter) into the base model')
      .example('$0 consolidate --base v001:model --adapter v004:adapter -m "math merge"', 'name the directories inside the versions') as never,
  handler: handler(async (a) => {
    await withStore(async (store) => {
      const tty = process.stderr.isTTY && !a.json;
      const r = await consolidate(store, {
        base: a.base,
        adapter: a.adapter,
        message: a.message,
        line: a.line,
        worker: a.worker,
        python: a.python,
        onStep: tty ? (s) => process.stderr.write(dim(`consolidate: ${s}\n`)) : undefined,
        onHookOutput: (l) => process.stderr.write(`hook: ${l}\n`),
      });
      if (a.json) return printJson(r);
      const name = (v: { version: string | undefined; commit: string; path: string }): string => `${v.version ?? v.commit.slice(0, 12)}${v.path ? `:${v.path}` : ''}`;
      out(
        `${r.version} (${r.commit.slice(0, 12)}): ${name(r.adapter)} merged into ${name(r.base)} ` +
          `by ${r.worker} on ${r.device} in ${r.seconds.toFixed(1)} s${r.backup ? `; backed up to '${r.backup}' first` : ''}`,
      );
    });
  }),
};
