/** `mstore merge-lora`: a LoRA adapter (PEFT or kohya) merged into its base model on the CPU (docs/merge.md). */
import type { CommandModule } from 'yargs';
import { mkdtemp, open, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { mergeLora, type MergeResult } from '../../merge/merge.js';
import { MstoreError } from '../../lib/errors.js';
import { dim, formatBytes, formatDuration, handler, out, printJson, progressBar, wholeNumber } from '../ui/output.js';

interface Args {
  base: string;
  adapter: string;
  out: string;
  threads?: number;
  json: boolean;
}

function summary(r: MergeResult): string {
  const kinds = new Map<string, number>();
  for (const m of r.merged) kinds.set(m.kind, (kinds.get(m.kind) ?? 0) + 1);
  return [...kinds].map(([k, n]) => `${n} ${k}`).join(', ');
}

export const mergeLoraCommand: CommandModule<object, Args> = {
  command: 'merge-lora',
  describe: 'Merge a LoRA adapter (PEFT or kohya) into its base model on the CPU (docs/merge.md)',
  builder: (y) =>
    y
      .option('base', { type: 'string', demandOption: true, requiresArg: true, describe: 'base model directory (model.safetensors, or shards + model.safetensors.index.json)' })
      .option('adapter', { type: 'string', demandOption: true, requiresArg: true, describe: 'PEFT adapter directory, or a kohya LoRA .safetensors file' })
      .option('out', { type: 'string', demandOption: true, requiresArg: true, describe: 'output directory (missing or empty; written next to it, then renamed into place)' })
      .option('threads', {
        type: 'number',
        requiresArg: true,
        describe: 'worker threads (default: every core; 0: compute on the main thread)',
        coerce: wholeNumber('--threads'),
      })
      .option('json', { type: 'boolean', default: false })
      .example('$0 merge-lora --base Qwen3-0.6B --adapter checkpoints/adapter --out merged', 'PEFT adapter into a (sharded) safetensors model')
      .example('$0 merge-lora --base sd15 --adapter my_lora.safetensors --out sd15-merged --json', 'a kohya LoRA; the result as JSON') as never,
  handler: handler(async (a) => {
    const dest = path.resolve(a.out);
    // Like the Python worker: a missing or empty directory (rename(2) replaces an empty one).
    const st = await stat(dest).catch(() => undefined);
    if (st && (!st.isDirectory() || (await readdir(dest)).length > 0)) throw new MstoreError('EEXISTS', `${a.out} already exists and is not an empty directory`);
    // Written beside the destination, renamed into place when complete: no partial output.
    const tmp = await mkdtemp(path.join(path.dirname(dest), `.${path.basename(dest)}.merge-`));
    const bar = progressBar('merge');
    let r: MergeResult;
    try {
      r = await mergeLora({
        base: a.base,
        adapter: a.adapter,
        out: tmp,
        threads: a.threads,
        onProgress: (p) => bar.update({ phase: 'store', done: p.done, total: p.total }),
      });
      bar.stop();
      await rename(tmp, dest);
      const dir = await open(path.dirname(dest), 'r');
      await dir.sync().catch(() => undefined);
      await dir.close();
    } catch (e) {
      bar.stop();
      await rm(tmp, { recursive: true, force: true });
      throw e;
    }
    if (a.json) return printJson({ out: dest, ...r });
    out(`merged ${r.merged.length} of ${r.tensors} tensors (${r.format} adapter: ${summary(r) || 'nothing to merge'}) into ${a.out}`);
    out(dim(`${r.weightFiles.length} weight file(s), ${formatBytes(r.bytes)} in ${formatDuration(r.seconds)} on ${r.threads} thread(s); ${r.copied.length} other file(s) copied`));
    for (const c of r.configChanges) out(`config.json: ${c}`);
    if (r.skipped.length) out(`not copied (weights in another format): ${r.skipped.join(', ')}`);
  }),
};
