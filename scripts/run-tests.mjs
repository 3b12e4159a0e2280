#!/usr/bin/env node
// Runs the uvu suites compiled to dist/test, one process per file (a crash or a hang names its
// file; each file's wall time is printed), MSTORE_TEST_JOBS files at a time (default 3: a file
// uses up to one core but waits on its servers, children and the disk part of the time, so
// three on CI's two cores finish sooner than two), longest first; each file's output is
// printed whole when it ends. Ends with the line CI reads: "N passed, N failed" (uvu's own
// summary, "Total: / Passed:", is not that line). Each failure's first lines are printed again
// just before it, so that a log cut to its tail still says what failed and why.
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';

const uvu = new URL('../node_modules/uvu/bin.js', import.meta.url).pathname;
const pattern = new RegExp(process.argv[2] ?? '\\.test\\.js$');
const files = readdirSync('dist/test')
  .filter((f) => f.endsWith('.test.js') && pattern.test(f))
  .sort();

const jobs = Math.max(1, Number(process.env.MSTORE_TEST_JOBS ?? 3) || 1);
// The long suites start first, so that the short ones fill in around them.
const LONG = ['remote-s3', 'hostile-faults', 'remote-http', 'remote-path', 'gc', 'deploy', 'crash', 'kill-ops', 'hostile-retention', 'history', 'retention', 'errors'];
const rank = (f) => {
  const i = LONG.findIndex((l) => f === `${l}.test.js`);
  return i < 0 ? LONG.length : i;
};
files.sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : 1));

/** uvu's report of each failed test: its FAIL line and what follows, up to 24 lines. */
function failureExcerpts(plain) {
  const lines = plain.split('\n');
  const out = [];
  lines.forEach((line, i) => {
    if (/^\s*FAIL\s/.test(line)) out.push(lines.slice(i, i + 24).join('\n'));
  });
  // a crash before uvu could report: the output's tail
  return out.length ? out : [lines.slice(-24).join('\n')];
}

function runFile(file) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, [uvu, 'dist/test', `^${file.replace(/\./g, '\\.')}$`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (d) => (text += d.toString()));
    child.stderr.on('data', (d) => (text += d.toString()));
    child.on('close', (code) => {
      process.stdout.write(text);
      const plain = text.replace(/\x1b\[[0-9;]*m/g, '');
      const total = Number(/Total:\s+(\d+)/.exec(plain)?.[1] ?? 0);
      const passed = Number(/Passed:\s+(\d+)/.exec(plain)?.[1] ?? 0);
      const skipped = Number(/Skipped:\s+(\d+)/.exec(plain)?.[1] ?? 0);
      let failed = Math.max(0, total - passed - skipped);
      if (code !== 0 && failed === 0) failed = 1; // a crash before uvu could count
      resolve({ file, passed, failed, skipped, seconds: (Date.now() - started) / 1000, failures: failed ? failureExcerpts(plain) : [] });
    });
  });
}

const results = [];
const queue = [...files];
const suiteStarted = Date.now();
await Promise.all(
  Array.from({ length: Math.min(jobs, queue.length) }, async () => {
    for (let f = queue.shift(); f; f = queue.shift()) results.push(await runFile(f));
  }),
);
results.sort((a, b) => (a.file < b.file ? -1 : 1));
const sum = (k) => results.reduce((a, r) => a + r[k], 0);
process.stdout.write('\nper file (wall time):\n');
for (const r of results) process.stdout.write(`  ${r.file.padEnd(28)} ${r.seconds.toFixed(1).padStart(7)} s  ${r.passed} passed${r.failed ? `, ${r.failed} FAILED` : ''}\n`);
for (const r of results) for (const f of r.failures) process.stdout.write(`\nfailed in ${r.file}:\n${f}\n`);
const passed = sum('passed');
const failed = sum('failed');
const skipped = sum('skipped');
process.stdout.write(`\nsuite: ${files.length} files in ${((Date.now() - suiteStarted) / 1000).toFixed(0)} s wall, ${jobs} at a time\n`);
process.stdout.write(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
process.exitCode = failed > 0 || files.length === 0 ? 1 : 0;
