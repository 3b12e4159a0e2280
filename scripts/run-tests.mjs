#!/usr/bin/env node
// Runs the uvu suites compiled to dist/test and ends with the line CI reads:
// "N passed, N failed". uvu's own summary ("Total: / Passed:") is not that line.
import { spawn } from 'node:child_process';

const uvu = new URL('../node_modules/uvu/bin.js', import.meta.url).pathname;
const pattern = process.argv[2] ?? '\\.test\\.js$';
const child = spawn(process.execPath, [uvu, 'dist/test', pattern], { stdio: ['ignore', 'pipe', 'inherit'] });
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
  process.stdout.write(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
  process.exitCode = failed > 0 || code !== 0 ? 1 : 0;
});
