#!/usr/bin/env node
/** mstore's command line: parse, dispatch to a thin command module, exit 0 / 1 / 2. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import type { CommandModule } from 'yargs';
import { COMMANDS, commandName } from './commands/index.js';
import { packageRoot } from '../lib/package-files.js';

// A reader that stops early (mstore log | head) is not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});

const argv = hideBin(process.argv);
const wantsHelp = argv.some((a) => a === '--help' || a === '-h');
const version = argv.includes('--version')
  ? (JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version
  : '';

/**
 * The command word: the first argument that is not an option (nor -C's value). Only that
 * command's module is loaded; every other command is listed for --help by its name and
 * description alone (src/cli/commands/index.ts).
 */
function commandWord(args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '-C') i++;
    else if (a === '--') return undefined;
    else if (!a.startsWith('-')) return a;
  }
  return undefined;
}
/** The one yargs internal used above (yargs 18: instance.getInternalMethods()). */
interface YargsInternals {
  getInternalMethods(): { getUsageInstance(): { cacheHelpMessage: () => void } };
}

const word = commandWord(argv);
const chosen = COMMANDS.find((e) => commandName(e) === word);
// A known command: only its module (registering 26 commands costs yargs ~20 ms). Otherwise
// (no command, --help, a typo) every command by name and description, for the listing and errors.
const commands: CommandModule[] = chosen
  ? [(await chosen.load()) as CommandModule]
  : COMMANDS.map((e) => ({ command: e.command, describe: e.describe, handler: () => undefined }));

const parser = yargs(argv);
// yargs renders the whole help text after every command to cache it (~8 ms of a 0.3 s no-op
// commit); nothing here shows help after a command has run, so only --help renders it.
if (!wantsHelp) (parser as unknown as YargsInternals).getInternalMethods().getUsageInstance().cacheHelpMessage = () => undefined;

await parser
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
  .command(commands)
  .demandCommand(1, 'name a command; see mstore --help')
  .strict()
  .help()
  .alias('h', 'help')
  .version(version)
  // yargs renders (and wraps) the help text on every run to cache it; wrapping costs ~30 ms of startup.
  .wrap(wantsHelp ? Math.min(110, process.stdout.columns || 110) : null)
  .fail((msg, err) => {
    // Validation and parse errors (yargs' YError, or a throwing coerce) are usage errors: exit 2.
    // Command failures never get here: ui/output.ts handler() reports those.
    process.stderr.write(`mstore: usage: ${msg ?? err?.message ?? 'invalid arguments'} (see mstore --help)\n`);
    process.exit(2);
  })
  .parseAsync();
// Every command awaits all of its work (serve returns only after shutting down): exit now
// rather than tear the heap down (~15 ms), once stdout and stderr have taken everything. A pipe
// whose reader is slower than us holds 64 KiB; the rest waits in the stream (an exit before
// the callbacks cut `log --json | jq` at 64 KiB).
process.stdout.write('', () => process.stderr.write('', () => process.exit()));
