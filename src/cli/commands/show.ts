import type { CommandModule } from 'yargs';
import { show } from '../../ops/inspect.js';
import { versionSide } from '../../ops/diff/sides.js';
import { tensorSummary, type TensorSummary } from '../../ops/diff/tensor-summary.js';
import { failLine, formatBytes, handler, out, printJson, statusBadge, yellow, withStore } from '../ui/output.js';

interface Args {
  rev: string;
  json: boolean;
  tensors: boolean;
}

export const showCommand: CommandModule<object, Args> = {
  command: 'show <rev>',
  describe: 'Show a version: metadata and files (path, size, sha256)',
  builder: (y) =>
    y
      .positional('rev', { type: 'string', demandOption: true })
      .option('json', { type: 'boolean', default: false })
      .option('tensors', { type: 'boolean', default: false, describe: 'also what each safetensors file holds: tensors, parameters, dtypes (headers only)' })
      .example('$0 show v003', 'metadata and file list of v003')
      .example('$0 show v003 --tensors', 'with the tensor summary of each safetensors file')
      .example('$0 show latest~1 --json', 'the version before latest, as JSON') as never,
  handler: handler(async (a) => {
    await withStore(async (store) => {
      const r = await show(store, a.rev);
      let tensors: TensorSummary[] | undefined;
      if (a.tensors) {
        const side = await versionSide(store, r.commit);
        try {
          tensors = await tensorSummary(side);
        } finally {
          await side.close();
        }
      }
      // Entries the version cannot hold are not listed; each line naming them goes to stderr (exit 1).
      if (a.json) {
        printJson(tensors ? { ...r, tensors } : r);
        for (const p of r.problems) failLine(p);
        return;
      }
      const m = r.meta;
      out(`${yellow(r.version ?? '(no version record)')} ${r.commit}${r.tags.length ? ` (${r.tags.join(', ')})` : ''}`);
      if (m) {
        out(`Description: ${m.description}`);
        out(`Created:     ${m.created} by ${m.author.name} <${m.author.email}> on ${m.host}`);
        if (r.status) out(`Status:      ${statusBadge(r.status)}${r.labels.status && m.status && m.status !== r.labels.status ? ` (was ${m.status} at commit)` : ''}`);
        if (m.lineage.parent_versions.length) out(`Parents:     ${m.lineage.parent_versions.join(', ')}`);
        for (const [k, v] of Object.entries(m.params)) out(`Param:       ${k} = ${JSON.stringify(v)}`);
        for (const [k, v] of Object.entries(m.metrics)) out(`Metric:      ${k} = ${JSON.stringify(v)}`);
        for (const d of m.training_data) out(`Data:        ${d}`);
        for (const [k, v] of Object.entries(m.meta)) out(`Meta:        ${k} = ${JSON.stringify(v)}`);
      }
      for (const [k, v] of Object.entries(r.labels)) if (k !== 'status') out(`Label:       ${k} = ${v}`);
      out(`Files:       ${r.files.length}, ${formatBytes(r.files.reduce((s, f) => s + f.size, 0))}`);
      for (const f of r.files) {
        const kind = f.kind === 'lfs' ? 'lfs ' : f.kind === 'link' ? 'link' : 'git ';
        out(`  ${f.mode} ${kind} ${formatBytes(f.size).padStart(10)}  ${f.oid.slice(0, 16)}  ${f.path}`);
      }
      for (const t of tensors ?? []) {
        const dtypes = Object.entries(t.dtypes).map(([d, n]) => `${d}×${n}`).join(' ');
        out(`Tensors:     ${t.path}${t.kind === 'sharded' ? ' (sharded)' : ''}: ${t.tensors} tensors, ${t.parameters.toLocaleString('en')} parameters, ${formatBytes(t.bytes)} (${dtypes})`);
      }
      for (const p of r.problems) failLine(p);
    });
  }),
};
