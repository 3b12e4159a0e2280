#!/usr/bin/env node
// Runs the uvu suites compiled to dist/test, one process per file (a crash or a hang names its
// file; each file's wall time is printed), and ends with the line CI reads:
// "N passed, N failed". uvu's own summary ("Total: / Passed:") is not that line.
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';

const uvu = new URL('../node_modules/uvu/bin.js', import.meta.url).pathname;
const pattern = new RegExp(process.argv[2] ?? '\\.test\\.js$');
const files = readdirSync('dist/test')
  .filter((f) => f.endsWith('.test.js') && pattern.test(f))
  .sort();

function runFile(file) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, [uvu, 'dist/test', `^${file.replace(/\./g, '\\.')}$`], { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    child.stdout.on('data', (d) => {
      process.stdout.write(d);
      text += d.toString();
    });
    child.on('close', (code) => {
      const plain = text.replace(/\x1b\[[0-9;]*m/g, '');
      const total = Number(/Total:\s+(\d+)/.exec(plain)?.[1] ?? 0);
      const passed = Number(/Passed:\s+(\d+)/.exec(plain)?.[1] ?? 0);
      const skipped = Number(/Skipped:\s+(\d+)/.exec(plain)?.[1] ?? 0);
      let failed = Math.max(0, total - passed - skipped);
      if (code !== 0 && failed === 0) failed = 1; // a crash before uvu could count
      resolve({ file, passed, failed, skipped, seconds: (Date.now() - started) / 1000 });
    });
  });
}

const results = [];
for (const f of files) results.push(await runFile(f));
const sum = (k) => results.reduce((a, r) => a + r[k], 0);
process.stdout.write('\nper file (wall time):\n');
for (const r of results) process.stdout.write(`  ${r.file.padEnd(28)} ${r.seconds.toFixed(1).padStart(7)} s  ${r.passed} passed${r.failed ? `, ${r.failed} FAILED` : ''}\n`);
const passed = sum('passed');
const failed = sum('failed');
const skipped = sum('skipped');
process.stdout.write(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
process.exitCode = failed > 0 || files.length === 0 ? 1 : 0;
