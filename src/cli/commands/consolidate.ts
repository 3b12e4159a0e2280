import type { CommandModule } from 'yargs';
import { consolidate } from '../../ops/consolidate.js';
import { MstoreError } from '../../lib/errors.js';
import { openRemote } from '../../remote/open.js';
import { push, type PushResult } from '../../remote/push.js';
import { deploy, type DeployOutcome } from '../../deploy/client.js';
import { dim, formatBytes, formatDuration, green, handler, out, printJson, progressBar, withStore } from '../ui/output.js';

interface Args {
  base: string;
  adapter: string;
  message?: string;
  line?: string;
  worker: 'auto' | 'python' | 'builtin';
  python?: string;
  push?: string;
  deploy: boolean;
  storeBytes: boolean;
  json: boolean;
}

export const consolidateCommand: CommandModule<object, Args> = {
  command: 'consolidate',
  describe: 'Merge an adapter version into a base version (verify, backup, merge, commit) and record it as a new version',
  builder: (y) =>
    y
      .option('base', { type: 'string', demandOption: true, requiresArg: true, describe: 'REV or REV:PATH of the base model' })
      .option('adapter', { type: 'string', demandOption: true, requiresArg: true, describe: 'REV or REV:PATH of the LoRA adapter' })
      .option('message', { alias: 'm', type: 'string', requiresArg: true, describe: 'description (default: merge ADAPTER into BASE)' })
      .option('line', { type: 'string', requiresArg: true, describe: 'line of the merged version (default: merged)' })
      .option('worker', { choices: ['auto', 'python', 'builtin'] as const, default: 'auto' as const, describe: 'auto: torch on a GPU when present (through the hook), else built-in (in-process, from the store)' })
      .option('python', { type: 'string', requiresArg: true, describe: 'Python interpreter for the torch worker (default: $MSTORE_PYTHON or python3)' })
      .option('push', { type: 'string', requiresArg: true, describe: 'then push the merged version to this remote' })
      .option('deploy', { type: 'boolean', default: false, describe: 'with --push: then deploy it there (docs/deploy.md)' })
      .option('store-bytes', { type: 'boolean', default: false, describe: "keep the merged weights as bytes (by default the built-in merge keeps each as its recipe: base, adapter and kernel version, rebuilt bit for bit when read; docs/format.md §18)" })
      .option('json', { type: 'boolean', default: false })
      .example('$0 consolidate --base base/v001 --adapter v003', 'merge v003 (an adapter) into the base model')
      .example('$0 consolidate --base base/v001 --adapter v003 --store-bytes', 'keep the merged weights as bytes (a store about to lose its base)')
      .example('$0 consolidate --base v001:model --adapter adapters/v004 --push box --deploy', 'merge, record, push to the box and make it live')
      .example('$0 consolidate --base v001:model --adapter v004:adapter -m "math merge"', 'name the directories inside the versions') as never,
  handler: handler(async (a) => {
    if (a.deploy && !a.push) throw new MstoreError('EUSAGE', '--deploy needs --push REMOTE');
    await withStore(async (store) => {
      // The remote is checked before the merge: a typo must not cost a consolidation.
      const remote = a.push ? (await openRemote(store, a.push)).remote : undefined;
      try {
        const tty = process.stderr.isTTY && !a.json;
        const bar = tty ? progressBar('merge') : undefined;
        const r = await consolidate(store, {
          base: a.base,
          adapter: a.adapter,
          message: a.message,
          line: a.line,
          worker: a.worker,
          python: a.python,
          keep: a.storeBytes ? 'bytes' : 'recipe',
          // A step after the merge ends its bar before its line is printed.
          onStep: tty ? (s) => (bar?.stop(), process.stderr.write(dim(`consolidate: ${s}\n`))) : undefined,
          onHookOutput: (l) => process.stderr.write(`hook: ${l}\n`),
          onProgress: bar?.update,
        }).finally(() => bar?.stop());
        const name = (v: { version: string | undefined; commit: string; path: string }): string => `${v.version ?? v.commit.slice(0, 12)}${v.path ? `:${v.path}` : ''}`;
        if (!a.json) {
          out(
            `${r.version} (${r.commit.slice(0, 12)}): ${name(r.adapter)} merged into ${name(r.base)} ` +
              `by ${r.worker} on ${r.device} in ${formatDuration(r.seconds)}${r.backup ? `; backed up to '${r.backup}' first` : ''}` +
              (r.recipes ? `; ${r.recipes} weight file(s) kept as recipes` : ''),
          );
        }
        let pushed: PushResult | undefined;
        let deployed: DeployOutcome | undefined;
        const onRemoteOutput = (l: string): void => void process.stderr.write(`remote: ${l}\n`);
        if (remote && a.deploy) {
          deployed = await deploy(store, remote, r.version, { onRemoteOutput });
          pushed = deployed.push;
        } else if (remote) pushed = await push(store, remote, { revs: [r.version], onRemoteOutput });
        if (a.json) printJson({ ...r, ...(pushed ? { push: pushed } : {}), ...(deployed ? { deploy: { attempt: deployed.attempt, live: deployed.status.live } } : {}) });
        else if (pushed) out(`pushed ${r.version} to ${pushed.remote} (${formatBytes(pushed.bytesSent)} sent)`);
        if (deployed) {
          const at = deployed.attempt;
          if (at && at.result !== 'ok') throw new MstoreError('EREMOTE', `${r.version} was merged and pushed, but its deploy failed on ${deployed.remote}: ${at.reason ?? 'unfinished'}`);
          if (!a.json) out(green(`${r.version} is live on ${deployed.remote}`));
        }
      } finally {
        await remote?.close();
      }
    });
  }),
};
