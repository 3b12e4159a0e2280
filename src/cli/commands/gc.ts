import type { CommandModule } from 'yargs';
import { gc, DEFAULT_GRACE } from '../../ops/retention/gc.js';
import { parseDuration } from '../../lib/clock.js';
import { formatBytes, handler, out, printJson, withStore } from '../ui/output.js';

interface Args {
  grace: string;
  dryRun: boolean;
  json: boolean;
}

export const gcCommand: CommandModule<object, Args> = {
  command: 'gc',
  describe: 'Free data no version needs (removed versions past the grace period)',
  builder: (y) =>
    y
      .option('grace', { type: 'string', default: DEFAULT_GRACE, requiresArg: true, describe: 'keep what was removed or written within this long (e.g. 14d, 12h, 0)' })
      .option('dry-run', { type: 'boolean', default: false, describe: 'report what would be freed; change nothing' })
      .option('json', { type: 'boolean', default: false })
      .example('$0 gc --dry-run', 'what would be freed')
      .example('$0 gc --grace 0', 'free everything no ref reaches now (no restore after this)') as never,
  handler: handler(async (a) => {
    const graceMs = parseDuration(a.grace, '--grace');
    await withStore(async (store) => {
      const r = await gc(store, { graceMs, dryRun: a.dryRun });
      if (a.json) return printJson(r);
      const verb = r.dryRun ? 'would free' : 'freed';
      out(
        `${verb} ${formatBytes(Math.max(0, r.freedBytes))}: ${r.packs.removed} pack(s) removed, ${r.packs.rewritten} rewritten, ` +
          `${r.chunks.removed} chunk(s) and ${r.files.removed} file(s) dropped; kept ${r.versions.live} live and ${r.versions.restorable} restorable version(s)` +
          (r.packs.young ? `, ${r.packs.young} pack(s) younger than ${a.grace}` : ''),
      );
      if (r.packs.damaged.length) out(`left alone: ${r.packs.damaged.length} damaged pack(s) (see mstore fsck)`);
    });
  }),
};
