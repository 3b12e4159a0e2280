/**
 * The web view (issue 16), driven in real headless Chromium (Debian's `chromium`, through
 * playwright-core; MSTORE_CHROMIUM names another executable). A store of five versions with
 * the five statuses, learning curves, a tag, and hostile text (`<script>`, `"><img onerror>`)
 * in a description, a label, a file name and a posted tag name:
 * - `mstore ui`: every version with its status, the filters, a version's files and lineage,
 *   compare (changed tensors, metric deltas by direction), curves (one SVG path per version),
 *   status and tag set from the page, phone width, labelled controls; hostile text stays text
 *   (no script runs, no element is injected); `..`, encoded `..` and NUL paths are refused,
 *   a foreign Host header too, and nothing outside the store is served.
 * - `mstore serve`: 401 without a session, a wrong token refused, pages with a read token, a
 *   status change refused with read scope and accepted with push scope; no token in its log.
 * - A 1,000-version store: the first page loads in under 1 s, measured by the browser
 *   (Navigation Timing, from the request to the load event, on a server that just started).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import http from 'node:http';
import path from 'node:path';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { chromium, type Browser, type Page } from 'playwright-core';
import { cleanup, listeningUrl, mstore, mstoreJson, spawnMstore, tmpDir, writeSafetensors } from './helpers.js';
import { startStandin } from './deploy-helpers.js';
import { Store } from '../src/repo/store.js';
import { commit } from '../src/ops/commit.js';
import { setLabels } from '../src/ops/labels.js';
import { createTag } from '../src/ops/tags.js';

const CHROMIUM = [process.env.MSTORE_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p): p is string => !!p && existsSync(p));

const XSS_DESC = `<script>window.__pwned = 'description'</script>"><img src=x onerror="window.__pwned='description-img'">`;
const XSS_LABEL = `"><img src=x onerror="window.__pwned='label'"><script>window.__pwned='label-script'</script>`;
/** A directory `"><script>window.__pwned='file'<` holding `script>.txt`: the path reads as a script element. */
const XSS_FILE = `"><img src=x onerror="window.__pwned='file'">.txt`;
const XSS_DIR_FILE = `"><script>window.__pwned='dir'</script>.txt`;
const XSS_TAG = `<script>window.__pwned='tag'</script>`;
const STATUSES = ['completed', 'training', 'pending', 'failed', 'draft'];

const root = tmpDir('mstore-web-');
/** A RAM file system when there is one: the 1,000-version store is built with no waiting on the disk. */
const fast = existsSync('/dev/shm') ? mkdtempSync('/dev/shm/mstore-web-big-') : root;
let browser: Browser;
const children: ChildProcess[] = [];

test.before(async () => {
  assert.ok(CHROMIUM, 'no Chromium found (/usr/bin/chromium; .ci/run installs Debian\'s chromium; MSTORE_CHROMIUM names another)');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
});
test.after(async () => {
  for (const c of children) c.kill('SIGTERM');
  await browser?.close();
  cleanup(root);
  if (fast !== root) cleanup(fast);
});

/** The five-version workspace: tensors and curves change, statuses v001..v005 = the five statuses. */
async function buildFive(ws: string): Promise<void> {
  mkdirSync(path.join(ws, 'evolution'), { recursive: true });
  const store = await Store.init(ws);
  try {
    for (let v = 1; v <= 5; v++) {
      writeSafetensors(path.join(ws, 'model.safetensors'), [
        { name: 'layers.0.weight', dtype: 'F32', shape: [16, 64], seed: 1 },
        { name: 'layers.1.weight', dtype: 'F32', shape: [16, 64], seed: 100 + v },
      ]);
      writeFileSync(path.join(ws, 'evolution', `${String(v).padStart(4, '0')}.json`), `${JSON.stringify({ step: v * 10, loss: 2 / v, accuracy: v / 10 })}\n`);
      if (v === 5) {
        writeFileSync(path.join(ws, XSS_FILE), 'hostile name\n');
        mkdirSync(path.join(ws, path.dirname(XSS_DIR_FILE)), { recursive: true });
        writeFileSync(path.join(ws, XSS_DIR_FILE), 'hostile directory name\n');
      }
      await commit(store, {
        cwd: ws,
        message: v === 4 ? XSS_DESC : `training run ${v}`,
        metrics: { loss: 2 / v, accuracy: v / 10 },
        params: { lr: 0.001 * v },
        status: STATUSES[v - 1],
      });
    }
    await commit(store, { cwd: ws, message: 'the adapter alone', line: 'adapters', status: 'completed', paths: ['model.safetensors'] });
    await setLabels(store, 'v004', { note: XSS_LABEL }, []);
    await createTag(store, 'production', 'v002');
  } finally {
    await store.close();
  }
}

/** A page that records any dialog and page error (a script that ran would show up there). */
async function newPage(width = 1100): Promise<{ page: Page; events: string[] }> {
  const page = await browser.newPage({ viewport: { width, height: 900 } });
  const events: string[] = [];
  page.on('dialog', (d) => {
    events.push(`dialog: ${d.message()}`);
    void d.dismiss();
  });
  page.on('pageerror', (e) => events.push(`pageerror: ${e.message}`));
  return { page, events };
}

/** No script ran and no markup came from stored text. */
async function assertInert(page: Page, events: string[], what: string): Promise<void> {
  const state = await page.evaluate(() => ({
    pwned: (window as unknown as { __pwned?: string }).__pwned ?? null,
    scripts: document.querySelectorAll('script').length,
    imgs: document.querySelectorAll('img').length,
    handlers: [...document.querySelectorAll('*')].filter((e) => [...e.attributes].some((a) => a.name.startsWith('on'))).length,
  }));
  assert.equal(state, { pwned: null, scripts: 0, imgs: 0, handlers: 0 }, `${what}: stored text became markup`);
  assert.equal(events, [], `${what}: a dialog or page error`);
}

/** A request with a raw (unnormalised) path, as a hostile client sends it. */
function rawGet(base: string, rawPath: string, headers: Record<string, string> = {}, method = 'GET', body?: string): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path: rawPath, method, headers }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function startChild(cwd: string, args: string[]): Promise<{ url: string; child: ChildProcess; stderr: () => string }> {
  const child = spawnMstore(cwd, args);
  children.push(child);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const url = await listeningUrl(child);
  return { url: new URL(url).origin, child, stderr: () => err };
}

const ws = path.join(root, 'ws');

/**
 * The 1,000-version store, built in this process while the other tests wait on the browser.
 * Versions differ by their record (metrics, status, description); files written right before
 * a commit would make each wait out the racy-timestamp window.
 */
async function buildThousand(): Promise<string> {
  const dir = path.join(fast, 'thousand');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'config.json'), '{}\n');
  const store = await Store.init(dir);
  try {
    for (let v = 1; v <= 1000; v++) {
      await commit(store, { cwd: dir, message: `run ${v}`, metrics: { loss: 2 / v, accuracy: v / 1000 }, status: STATUSES[v % 5], allowEmpty: v > 1 });
    }
  } finally {
    await store.close();
  }
  return dir;
}
const thousand = buildThousand();
thousand.catch(() => undefined); // awaited (and reported) by its test


test('mstore ui: versions with their statuses, filters, a version, compare, curves, changes, phone width', async () => {
  await buildFive(ws);
  const { url } = await startChild(ws, ['ui', '--listen', '127.0.0.1:0']);
  const { page, events } = await newPage();

  const res = await page.goto(`${url}/ui/`);
  assert.is(res?.status(), 200);
  const rows = page.locator('table.versions tbody tr');
  assert.is(await rows.count(), 5);
  for (let v = 1; v <= 5; v++) {
    const row = rows.nth(5 - v); // newest first
    assert.is(await row.locator('td').nth(0).innerText(), `v00${v}`);
    assert.match(await row.locator('.badge').innerText(), new RegExp(`${STATUSES[v - 1]}$`), `v00${v}'s status`);
    assert.ok(await row.locator(`.badge-${STATUSES[v - 1]}`).count(), `v00${v}'s badge has its status's colour`);
  }
  assert.ok((await rows.nth(3).innerText()).includes('production'), "v002's row shows its tag");

  // Filters: status, tag (the form's own controls, by their labels).
  await page.getByLabel('Status').selectOption('failed');
  await page.getByRole('button', { name: 'Filter' }).click();
  assert.equal(await page.locator('table.versions tbody tr td:first-child').allInnerTexts(), ['v004']);
  await page.goto(`${url}/ui/?tag=production`);
  assert.equal(await page.locator('table.versions tbody tr td:first-child').allInnerTexts(), ['v002']);
  await page.getByLabel('Line').selectOption('adapters');
  await page.getByLabel('Tag').selectOption('');
  await page.getByRole('button', { name: 'Filter' }).click();
  assert.equal(await page.locator('table.versions tbody tr td:first-child').allInnerTexts(), ['adapters/v001']);
  await page.getByRole('link', { name: 'adapters/v001' }).click();
  assert.is(await page.locator('h1').innerText(), 'Version adapters/v001', 'a line version (its / encoded in the URL)');

  // A version: files (path, size, sha256) and lineage as links.
  await page.goto(`${url}/ui/`);
  await page.getByRole('link', { name: 'v002', exact: true }).click();
  assert.is(await page.locator('h1').innerText(), 'Version v002');
  const shown = mstoreJson<{ files: { path: string; oid: string }[] }>(ws, ['show', 'v002']);
  const model = shown.files.find((f) => f.path === 'model.safetensors')!;
  const fileRow = page.locator('table.files tbody tr', { hasText: 'model.safetensors' });
  assert.ok((await fileRow.innerText()).includes(model.oid), 'the file row shows its sha256');
  assert.match(await page.locator('main').innerText(), /model\.safetensors\s+2\s+2,048\s+8\.00 KiB\s+F32 ×2/, 'the tensor summary');
  await page.locator('dl.meta a', { hasText: 'v001' }).click();
  assert.is(await page.locator('h1').innerText(), 'Version v001', 'the parent link leads to v001');

  // Compare: the changed tensor and the metric deltas, better or worse by direction.
  await page.goto(`${url}/ui/compare?a=v001&b=v002`);
  assert.equal(await page.locator('table.tensors tbody tr td:first-child').allInnerTexts(), ['layers.1.weight']);
  const loss = await page.locator('table.metrics tbody tr', { hasText: 'loss' }).innerText();
  assert.match(loss, /-1\b/, 'loss delta');
  assert.match(loss, /better \(lower is better\)/);
  await page.goto(`${url}/ui/compare?a=v002&b=v001`);
  assert.match(await page.locator('table.metrics tbody tr', { hasText: 'accuracy' }).innerText(), /worse \(higher is better\)/);
  assert.ok(await page.locator('table.metrics .worse').count(), 'a worse delta is coloured as worse');

  // Curves: one SVG path per version, for the metric chosen on the page.
  await page.goto(`${url}/ui/curves?v=v001&v=v002&v=v003&v=v004&v=v005&metric=accuracy`);
  assert.is(await page.locator('figure.chart svg g.mark-line path').count(), 5);
  assert.is(await page.getByLabel('Metric').inputValue(), 'accuracy');

  // Changing from the page: a status and a tag.
  await page.goto(`${url}/ui/version/v003`);
  await page.getByLabel('Status').selectOption('completed');
  await page.getByRole('button', { name: 'Set status' }).click();
  assert.match(await page.locator('p.notice').innerText(), /Status set/);
  assert.match(await page.locator('dl.meta .badge').first().innerText(), /completed$/);
  await page.getByLabel('New tag').fill('reviewed');
  await page.getByRole('button', { name: 'Add tag' }).click();
  assert.ok((await page.locator('dl.meta').first().innerText()).includes('reviewed'));
  const log = mstoreJson<{ version: string; status: string; tags: string[] }[]>(ws, ['log']);
  const v3 = log.find((e) => e.version === 'v003')!;
  assert.equal([v3.status, v3.tags], ['completed', ['reviewed']], 'the store holds what the page set');

  // Every control has a label; at phone width nothing widens the page.
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll('input:not([type=hidden]), select, button')].filter((e) => !(e.closest('label') || e.textContent?.trim() || e.getAttribute('aria-label'))).length,
  );
  assert.is(unlabelled, 0, 'controls without a label');
  // Text contrast (WCAG AA, 4.5:1) of every kind of text the pages show, badges and verdicts included.
  for (const p of ['/ui/', '/ui/version/v003', '/ui/compare?a=v002&b=v001']) {
    await page.goto(`${url}${p}`);
    const low = await page.evaluate(() => {
      const rgb = (c: string): number[] => (c.match(/[\d.]+/g) ?? []).map(Number);
      const lum = (c: number[]): number => {
        const [r, g, b] = c.slice(0, 3).map((v) => (v / 255 <= 0.03928 ? v / 255 / 12.92 : ((v / 255 + 0.055) / 1.055) ** 2.4));
        return 0.2126 * r + 0.7152 * g + 0.0722 * b;
      };
      const background = (e: Element | null): number[] => {
        for (; e; e = e.parentElement) {
          const c = rgb(getComputedStyle(e).backgroundColor);
          if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c;
        }
        return [255, 255, 255];
      };
      const out: string[] = [];
      for (const e of document.querySelectorAll('.badge, td, th, a, label, button, caption, .muted, .better, .worse, .tag, p, dt, dd, h1, h2')) {
        const [l1, l2] = [lum(rgb(getComputedStyle(e).color)), lum(background(e))].sort((a, b) => b - a);
        const ratio = (l1 + 0.05) / (l2 + 0.05);
        if (ratio < 4.5) out.push(`${e.tagName.toLowerCase()}.${e.className} "${(e.textContent ?? '').trim().slice(0, 30)}": ${ratio.toFixed(2)}`);
      }
      return out;
    });
    assert.equal(low, [], `${p}: text under 4.5:1 contrast`);
  }
  const phone = await newPage(360);
  for (const p of ['/ui/', '/ui/version/v005', '/ui/compare?a=v001&b=v005', '/ui/curves?v=v001&v=v005']) {
    await phone.page.goto(`${url}${p}`);
    const w = await phone.page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(w <= 361, `${p} at 360 px is ${w} px wide`);
  }
  await phone.page.close();
  assert.equal(events, []);
  await page.close();
});

test('mstore ui: hostile text is shown as text; .., encoded .., NUL and foreign hosts are refused', async () => {
  const { url } = await startChild(ws, ['ui', '--listen', '127.0.0.1:0']);
  const { page, events } = await newPage();
  await page.goto(`${url}/ui/`);
  assert.ok((await page.locator('table.versions').innerText()).includes(XSS_DESC), 'the description, as text');
  await assertInert(page, events, 'versions');
  await page.goto(`${url}/ui/version/v004`);
  assert.ok((await page.locator('main').innerText()).includes(XSS_LABEL), 'the label, as text');
  await assertInert(page, events, 'v004');
  await page.goto(`${url}/ui/version/v005`);
  const files = await page.locator('table.files').innerText();
  assert.ok(files.includes(XSS_FILE) && files.includes(XSS_DIR_FILE), 'the file names, as text');
  await assertInert(page, events, 'v005');
  await page.goto(`${url}/ui/compare?a=v003&b=v005`);
  assert.ok((await page.locator('table.files').innerText()).includes(XSS_FILE));
  await assertInert(page, events, 'compare');
  // A tag name with markup: refused by the tag rules, the refusal shows it as text.
  await page.goto(`${url}/ui/version/v005`);
  await page.getByLabel('New tag').fill(XSS_TAG);
  const [refused] = await Promise.all([page.waitForResponse((r) => r.url().endsWith('/tag')), page.getByRole('button', { name: 'Add tag' }).click()]);
  assert.is(refused.status(), 400);
  assert.match(await page.locator('.error').innerText(), /tag/);
  await assertInert(page, events, 'the refused tag');
  assert.not.ok(mstoreJson<{ name: string }[]>(ws, ['tag', '--list']).some((t) => t.name.includes('<')));

  for (const p of ['/ui/../../../../etc/passwd', '/ui/%2e%2e/%2e%2e/etc/passwd', '/ui/version/..%2f..%2f..%2fetc%2fpasswd', '/ui/version/%2E%2E', '/ui/style.css%00', '/ui/version/v001%00', '/ui/compare?a=v001%00&b=v002', '/ui/..%5c..%5cetc']) {
    const r = await rawGet(url, p);
    assert.is(r.status, 400, `${p}: ${r.status}`);
    assert.not.ok(r.body.includes('root:'), `${p} served a file`);
  }
  for (const p of ['/etc/passwd', '/.mstore/config.json', '/ui/.mstore/config.json', '/ui/version/v001/../../config.json']) {
    const r = await rawGet(url, p);
    assert.ok(r.status === 404 || r.status === 400, `${p}: ${r.status}`);
    assert.not.ok(/root:|"format"/.test(r.body), `${p} served a file`);
  }
  const rebound = await rawGet(url, '/ui/', { host: 'attacker.example:80' });
  assert.is(rebound.status, 403, 'a foreign Host header is refused');
  await page.close();
});

test('mstore serve: login, 401 without a session, read scope reads, push scope changes', async () => {
  const box = path.join(root, 'box');
  assert.is(mstore(root, ['init', '--bare', box]).code, 0);
  assert.is(mstore(ws, ['remote', 'add', 'box', box]).code, 0);
  const pushed = mstore(ws, ['push', 'box']);
  assert.is(pushed.code, 0, pushed.stderr);
  const READ = 'web-read-token-0123456789';
  const PUSH = 'web-push-token-9876543210';
  writeFileSync(path.join(root, 'tokens'), `read ${READ}\npush ${PUSH}\n`);
  // A deploy target: the inference API stand-in; one deploy goes live, one is refused by the API.
  const standin = await startStandin();
  children.push(standin.child);
  const setup = mstore(box, ['deploy', 'setup', '--root', path.join(root, 'deployed'), '--api', standin.url]);
  assert.is(setup.code, 0, setup.stderr);
  const served = await startChild(root, ['serve', box, '--listen', '127.0.0.1:0', '--tokens', path.join(root, 'tokens')]);
  const url = served.url;
  assert.is(mstore(ws, ['remote', 'add', 'boxhttp', url, '--token-env', 'BOX_TOKEN']).code, 0);
  const live = mstore(ws, ['deploy', 'boxhttp', 'v002'], { BOX_TOKEN: PUSH });
  assert.is(live.code, 0, live.stderr);
  await standin.setFaults({ register: 500 });
  assert.is(mstore(ws, ['deploy', 'boxhttp', 'v003'], { BOX_TOKEN: PUSH }).code, 1, 'the API refuses v003');
  await standin.setFaults({});

  for (const p of ['/ui/', '/ui/version/v001', '/ui/compare?a=v001&b=v002', '/ui/deploys']) {
    const r = await rawGet(url, p);
    assert.is(r.status, 401, `${p} without a session`);
    assert.not.ok(r.body.includes('v001'), `${p}: nothing of the store without a session`);
  }
  assert.is((await rawGet(url, '/ui/', { cookie: 'mstore_ui=forged' })).status, 401, 'a forged session');
  const form = { 'content-type': 'application/x-www-form-urlencoded' };
  assert.is((await rawGet(url, '/ui/login', form, 'POST', `token=${'x'.repeat(20_000)}`)).status, 413, 'a form over 16 KiB');
  assert.is((await rawGet(url, '/ui/login', { 'content-type': 'application/json' }, 'POST', JSON.stringify({ token: READ }))).status, 415, 'a login that is not a form');
  assert.is((await rawGet(url, '/ui/version/v001/label', form, 'POST', 'status=failed')).status, 401, 'a change without a session');
  assert.is((await rawGet(url, '/ui/login', {}, 'DELETE')).status, 405);
  assert.is((await rawGet(url, '/ui/login', { ...form, origin: 'not a url' }, 'POST', `token=${READ}`)).status, 403, 'a malformed Origin');

  const { page, events } = await newPage();
  const first = await page.goto(`${url}/ui/`);
  assert.is(first?.status(), 401);
  await page.getByLabel('Token').fill('not-a-token-at-all-0000');
  await page.getByRole('button', { name: 'Log in' }).click();
  assert.match(await page.locator('.error').innerText(), /Unknown token/);
  await page.getByLabel('Token').fill(READ);
  await page.getByRole('button', { name: 'Log in' }).click();
  assert.is(await page.locator('table.versions tbody tr').count(), 5, 'the versions, with a read token');
  const cookie = (await page.context().cookies()).find((c) => c.name === 'mstore_ui')!;
  assert.equal([cookie.httpOnly, cookie.sameSite], [true, 'Strict']);
  assert.not.ok(cookie.value.includes(READ), 'the cookie is a session id, not the token');
  assert.not.ok(page.url().includes(READ), 'the token is not in a URL');

  await page.goto(`${url}/ui/version/v001`);
  assert.is(await page.getByRole('button', { name: 'Set status' }).count(), 0, 'no change forms with read scope');
  const csrf = await page.locator('form.logout input[name=csrf]').inputValue();
  const denied = await page.request.post(`${url}/ui/version/v001/label`, { form: { status: 'failed', csrf }, headers: { origin: url } });
  assert.is(denied.status(), 403, 'a status change with read scope');
  assert.is(mstoreJson<{ status: string }>(box, ['show', 'v001']).status, 'completed', 'nothing changed');
  const noCsrf = await page.request.post(`${url}/ui/version/v001/label`, { form: { status: 'failed' } });
  assert.is(noCsrf.status(), 403);

  await page.getByRole('button', { name: 'Log out' }).click();
  assert.is((await page.goto(`${url}/ui/`))?.status(), 401, 'logged out');
  await page.getByLabel('Token').fill(PUSH);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.goto(`${url}/ui/version/v001`);
  const cross = await page.request.post(`${url}/ui/version/v001/label`, {
    form: { status: 'failed', csrf: await page.locator('form.logout input[name=csrf]').inputValue() },
    headers: { origin: 'http://attacker.example' },
  });
  assert.is(cross.status(), 403, 'a form posted from another origin');
  await page.getByLabel('Status').selectOption('failed');
  await page.getByRole('button', { name: 'Set status' }).click();
  assert.match(await page.locator('dl.meta .badge').first().innerText(), /failed$/);
  assert.is(mstoreJson<{ status: string }>(box, ['show', 'v001']).status, 'failed', 'the served store holds the change');
  // Deploys: v002 live, every attempt with its result, the failure with its reason.
  await page.goto(`${url}/ui/deploys`);
  assert.match(await page.locator('main > p').first().innerText(), /^Live: v002 /);
  const attempts = await page.locator('table.deploys tbody tr').allInnerTexts();
  assert.is(attempts.length, 2, attempts.join('\n'));
  assert.match(attempts[0], /deploy\s+v003\s+failed\s+.*500/, 'the failed attempt with its reason');
  assert.match(attempts[1], /deploy\s+v002\s+ok/);
  await page.goto(`${url}/ui/version/v002`);
  assert.match(await page.locator('main').innerText(), /Deploy attempts of this version[\s\S]*deploy\s+ok/, "v002's page lists its deploy");
  assert.equal(events, []);
  await page.close();
  for (const t of [READ, PUSH]) assert.not.ok(served.stderr().includes(t), "a token in serve's log");
});

test('a 1,000-version store: the first page loads in under 1 s in the browser', async () => {
  const dir = await thousand;
  const { url } = await startChild(dir, ['ui', '--listen', '127.0.0.1:0']);
  const { page, events } = await newPage();
  const started = Date.now();
  await page.goto(`${url}/ui/`, { waitUntil: 'load' });
  const loadMs = Date.now() - started;
  const nav = await page.evaluate(() => {
    const n = performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming;
    return { responseEnd: n.responseEnd - n.startTime, loadEnd: n.loadEventEnd - n.startTime };
  });
  console.log(`  1,000 versions: first page loaded in ${loadMs} ms (navigation: response ${nav.responseEnd.toFixed(0)} ms, load ${nav.loadEnd.toFixed(0)} ms)`);
  assert.is(await page.locator('table.versions tbody tr').count(), 50);
  assert.match(await page.locator('.pager').innerText(), /page 1 of 20 · 1000 versions/);
  assert.is(await page.locator('table.versions tbody tr td:first-child').first().innerText(), 'v1000');
  // The browser's own measure (Navigation Timing: request sent to the load event, style sheet
  // included); the wall time of goto adds the test's round trips to the browser process.
  assert.ok(nav.loadEnd < 1000, `the first page loaded in ${nav.loadEnd.toFixed(0)} ms (response ${nav.responseEnd.toFixed(0)} ms; goto ${loadMs} ms)`);
  await page.getByRole('link', { name: 'Older →' }).click();
  assert.is(await page.locator('table.versions tbody tr td:first-child').first().innerText(), 'v950');
  assert.equal(events, []);
  await page.close();
});

test.run();
