/**
 * How long operations report progress: bytes (or items) done of a total, with an optional
 * phase and file. The library only calls back; cli/ui draws the bars.
 */
export interface Progress {
  done: number;
  total: number;
  phase?: 'scan' | 'store' | 'checkout';
  file?: string;
}
