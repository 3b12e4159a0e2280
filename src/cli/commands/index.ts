/**
 * Every command, and how to load it. cli.ts imports only the module of the command being
 * run (a no-op `mstore commit` must start fast, and `push` need not parse the merge kernels);
 * the rest appear in `mstore --help` from these lines. test/units.test.ts checks that each
 * line matches its module.
 */
export interface CommandEntry {
  /** The module's yargs `command` string. */
  command: string;
  describe: string;
  /** The yargs CommandModule (each has its own argument type, hence `object` here). */
  load: () => Promise<object>;
}

export const COMMANDS: CommandEntry[] = [
  { command: 'init [dir]', describe: 'Create a store: DIR/.mstore/, or a bare store at DIR with --bare', load: async () => (await import('./init.js')).initCommand },
  { command: 'commit [paths..]', describe: 'Record the workspace (or some paths) as the next version', load: async () => (await import('./commit.js')).commitCommand },
  { command: 'log [rev]', describe: 'List versions, newest first', load: async () => (await import('./log.js')).logCommand },
  { command: 'show <rev>', describe: 'Show a version: metadata and files (path, size, sha256)', load: async () => (await import('./show.js')).showCommand },
  { command: 'checkout <rev> [paths..]', describe: 'Materialise a version (or some of its files) into the workspace or --to DIR', load: async () => (await import('./checkout.js')).checkoutCommand },
  { command: 'tag [name] [rev]', describe: 'Name a version (annotated tag), delete a name, or list tags', load: async () => (await import('./tag.js')).tagCommand },
  { command: 'status', describe: 'Show added, modified and deleted files against latest', load: async () => (await import('./status.js')).statusCommand },
  { command: 'diff <a> [b] [paths..]', describe: 'Compare two versions (or a version and the workspace): metadata, params, metrics, files, tensors, text, curves', load: async () => (await import('./diff.js')).diffCommand },
  { command: 'curves <revs..>', describe: 'Learning curves of versions (evolution/, trainer_state.json), overlaid', load: async () => (await import('./curves.js')).curvesCommand },
  { command: 'label <rev> [pairs..]', describe: 'Annotate a version after the fact (status, notes, eval results): git notes, history kept', load: async () => (await import('./label.js')).labelCommand },
  { command: 'verify [revs..]', describe: 'Prove versions can be checked out: re-hash every byte of every file (exit 1 on damage)', load: async () => (await import('./verify.js')).verifyCommand },
  { command: 'fsck', describe: 'Check the whole store: packs, index, git objects, refs; count unreachable data (exit 1 on damage)', load: async () => (await import('./fsck.js')).fsckCommand },
  { command: 'backup [args..]', describe: 'Copy versions to a backup store and verify every byte there; add, list, restore backups', load: async () => (await import('./backup.js')).backupCommand },
  { command: 'rm <revs..>', describe: 'Remove versions (after a verified pre-deletion backup); without --confirm, only show what would go', load: async () => (await import('./rm.js')).rmCommand },
  { command: 'prune', describe: 'Remove versions by a retention policy (restic forget rules); shows the plan unless --execute', load: async () => (await import('./prune.js')).pruneCommand },
  { command: 'restore <ref>', describe: 'Bring back a removed version or tag from the ref history (until gc frees its data)', load: async () => (await import('./restore.js')).restoreCommand },
  { command: 'reflog [ref]', describe: 'The history of every ref and tag move (newest first): time, old, new, reason', load: async () => (await import('./reflog.js')).reflogCommand },
  { command: 'gc', describe: 'Free data no version needs (removed versions past the grace period)', load: async () => (await import('./gc.js')).gcCommand },
  { command: 'export <revs..>', describe: 'Write versions to a tar file: a bundle for mstore import, or plain model directories', load: async () => (await import('./export.js')).exportCommand },
  { command: 'import <file>', describe: 'Add the versions of a tar file made by mstore export (checked in full before anything is written)', load: async () => (await import('./import.js')).importCommand },
  { command: 'remote [args..]', describe: 'Add, list and remove named remotes (another store, mstore serve, S3)', load: async () => (await import('./remote.js')).remoteCommand },
  { command: 'push <remote> [revs..]', describe: 'Send versions to a remote (only what it lacks) and move its refs together', load: async () => (await import('./push.js')).pushCommand },
  { command: 'pull <remote> [refs..]', describe: "Fetch versions from a remote (only what this store lacks, verified) and update local refs", load: async () => (await import('./pull.js')).pullCommand },
  { command: 'clone <url> [dir]', describe: "Create a store from a remote's versions (remote 'origin'), then check out latest", load: async () => (await import('./clone.js')).cloneCommand },
  { command: 'serve [store]', describe: 'Serve a bare store over HTTP(S) to push, pull and clone (bearer tokens with read/push/admin scopes)', load: async () => (await import('./serve.js')).serveCommand },
  { command: 'ui', describe: 'Browse the store in a web browser: versions, statuses, metrics, curves, diffs, deploys (docs/ui.md)', load: async () => (await import('./ui.js')).uiCommand },
  { command: 'deploy [args..]', describe: 'Deploy a version to the inference box (push, switch, register, activate), show deploy status, roll back', load: async () => (await import('./deploy.js')).deployCommand },
  { command: 'consolidate', describe: 'Merge an adapter version into a base version (verify, backup, merge, commit) and record it as a new version', load: async () => (await import('./consolidate.js')).consolidateCommand },
  { command: 'materialize <rev>', describe: "Store the bytes of a version's files kept as recipes (rebuilt and verified), so it no longer needs their base and adapter", load: async () => (await import('./materialize.js')).materializeCommand },
  { command: 'merge-lora', describe: 'Merge a LoRA adapter (PEFT or kohya) into its base model on the CPU (docs/merge.md)', load: async () => (await import('./merge-lora.js')).mergeLoraCommand },
];

/** The command's name: the first word of its yargs command string. */
export function commandName(e: CommandEntry): string {
  return e.command.split(' ')[0];
}
