#!/usr/bin/env node
/** mstore's command line: parse, dispatch to a thin command module, exit 0 / 1 / 2. */
import { readFileSync } from 'node:fs';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { initCommand } from './commands/init.js';
import { commitCommand } from './commands/commit.js';
import { logCommand } from './commands/log.js';
import { showCommand } from './commands/show.js';
import { checkoutCommand } from './commands/checkout.js';
import { tagCommand } from './commands/tag.js';
import { statusCommand } from './commands/status.js';
import { verifyCommand } from './commands/verify.js';
import { exportCommand } from './commands/export.js';
import { importCommand } from './commands/import.js';
import { fsckCommand } from './commands/fsck.js';
import { backupCommand } from './commands/backup.js';
import { rmCommand } from './commands/rm.js';
import { restoreCommand } from './commands/restore.js';
import { reflogCommand } from './commands/reflog.js';
import { pruneCommand } from './commands/prune.js';
import { gcCommand } from './commands/gc.js';
import { curvesCommand } from './commands/curves.js';
import { labelCommand } from './commands/label.js';
import { diffCommand } from './commands/diff.js';
import { consolidateCommand } from './commands/consolidate.js';
import { mergeLoraCommand } from './commands/merge-lora.js';

// A reader that stops early (mstore log | head) is not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});

const argv = hideBin(process.argv);
const wantsHelp = argv.some((a) => a === '--help' || a === '-h');
// Both paths are two levels below the package root: dist/src/cli.js and dist/bundle/cli.js.
const version = argv.includes('--version')
  ? (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version
  : '';

await yargs(argv)
  .scriptName('mstore')
  .usage('$0 <command> [options]\n\nA Git-like, content-addressed store for machine-learning models.')
  .option('C', { type: 'string', global: true, describe: 'run as if started in DIR (repeatable, like git)', requiresArg: true })
  .middleware((a) => {
    // Like git, repeated -C options chain: `-C a -C b` means a/b.
    const dirs = a.C === undefined ? [] : ([] as unknown[]).concat(a.C);
    for (const d of dirs) {
      try {
        process.chdir(String(d));
      } catch {
        process.stderr.write(`mstore: usage: cannot change to directory '${String(d)}' (see mstore --help)\n`);
        process.exit(2);
      }
    }
  }, true)
  .command(initCommand)
  .command(commitCommand)
  .command(logCommand)
  .command(showCommand)
  .command(checkoutCommand)
  .command(tagCommand)
  .command(statusCommand)
  .command(verifyCommand)
  .command(exportCommand)
  .command(importCommand)
  .command(fsckCommand)
  .command(backupCommand)
  .command(rmCommand)
  .command(restoreCommand)
  .command(reflogCommand)
  .command(pruneCommand)
  .command(gcCommand)
  .command(curvesCommand)
  .command(labelCommand)
  .command(diffCommand)
  .command(consolidateCommand)
  .command(mergeLoraCommand)
  .demandCommand(1, 'name a command; see mstore --help')
  .strict()
  .help()
  .alias('h', 'help')
  .version(version)
  // yargs renders (and wraps) the help text on every run to cache it; wrapping costs ~30 ms of startup.
  .wrap(wantsHelp ? Math.min(110, process.stdout.columns || 110) : null)
  .fail((msg, err) => {
    // Validation and parse errors (yargs' YError, or a throwing coerce) are usage errors: exit 2.
    // Command failures never get here: commands/ui.ts handler() reports those.
    process.stderr.write(`mstore: usage: ${msg ?? err?.message ?? 'invalid arguments'} (see mstore --help)\n`);
    process.exit(2);
  })
  .parseAsync();
