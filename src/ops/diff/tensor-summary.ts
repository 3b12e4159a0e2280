/**
 * What a version's safetensors files hold, without reading their data: per file (or sharded
 * checkpoint, through its index) the tensor count, parameters, bytes and dtypes. The headers
 * are read and validated by the same code as `diff --tensors` (a file that is not valid
 * safetensors is left out, as there). Behind `show --tensors` and the web view's version page.
 */
import type { Side } from './sides.js';
import { diffTensors } from './tensors.js';

export interface TensorSummary {
  kind: 'file' | 'sharded';
  path: string;
  tensors: number;
  /** Elements over all tensors. */
  parameters: number;
  bytes: number;
  /** dtype -> number of tensors, sorted by dtype. */
  dtypes: Record<string, number>;
}

export async function tensorSummary(side: Side): Promise<TensorSummary[]> {
  // A side compared with itself: every tensor is 'unchanged', found from headers and chunk ids alone.
  const diffs = await diffTensors(side, side);
  return diffs.map((d) => {
    const dtypes: Record<string, number> = {};
    let parameters = 0;
    let bytes = 0;
    for (const t of d.tensors) {
      if (t.dtypeB) dtypes[t.dtypeB] = (dtypes[t.dtypeB] ?? 0) + 1;
      parameters += (t.shapeB ?? []).reduce((a, n) => a * n, 1);
      bytes += t.bytesB ?? 0;
    }
    const sorted = Object.fromEntries(Object.entries(dtypes).sort(([a], [b]) => (a < b ? -1 : 1)));
    return { kind: d.kind, path: d.path, tensors: d.tensors.length, parameters, bytes, dtypes: sorted };
  });
}
