/**
 * Retention through the real CLI: rm (refused without a backup store, plan without --confirm,
 * verified pre-deletion backup), the ref history (reflog), restore within the grace period,
 * backup add/list/restore (byte for byte after gc), and prune against restic's forget rules,
 * computed independently here and, when restic is installed, by restic itself.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { cleanup, git, layerTensors, mstore, mstoreJson, sha256File, tmpDir, treeDigest, writeModelDir } from './helpers.js';

interface CommitJson {
  changed: boolean;
  version: string;
  commit: string;
}
interface LogJson {
  version: string;
  commit: string;
  date: string;
  tags: string[];
}
interface RefLogJson {
  time: string;
  ref: string;
  old: string | null;
  new: string | null;
  reason: string;
  op: string;
  message?: string;
}
interface BackupRecordJson {
  time: string;
  name: string;
  path: string;
  type: string;
  reason: string;
  versions: { name: string; commit: string }[];
  verified: boolean;
  verifiedBytes: number;
}
interface BackupListJson {
  stores: Record<string, { path: string }>;
  default: string | null;
  backups: BackupRecordJson[];
}
interface PruneDecisionJson {
  version: string;
  commit: string;
  line: string;
  created: string;
  tags: string[];
  reasons: string[];
}
interface PrunePlanJson {
  dryRun: boolean;
  keep: PruneDecisionJson[];
  remove: PruneDecisionJson[];
}

const gitdirOf = (ws: string): string => path.join(ws, '.mstore', 'git');

/** Commits the workspace with the store clock pinned to `iso`. */
function commitAt(ws: string, message: string, iso: string, extra: string[] = []): CommitJson {
  const r = mstore(ws, ['commit', '-m', message, ...extra, '--json'], { MSTORE_NOW: iso });
  if (r.code !== 0) throw new Error(`commit ${message} at ${iso} exited ${r.code}: ${r.stderr}`);
  const c = JSON.parse(r.stdout) as CommitJson;
  assert.ok(c.changed, `commit ${message} changed nothing`);
  return c;
}

/** Every file under dir (relative path, size, sha256), sorted. */
function listing(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const name of readdirSync(path.join(dir, rel)).sort()) {
      const p = rel ? `${rel}/${name}` : name;
      const st = statSync(path.join(dir, p));
      if (st.isDirectory()) walk(p);
      else out.push(`${p} ${st.size} ${sha256File(path.join(dir, p))}`);
    }
  };
  walk('');
  return out;
}

/** Refs, ref history and packs of a workspace's store: what rm must not touch when it refuses. */
function storeState(ws: string): { refs: string; reflog: string; packs: string[] } {
  const refs = git(gitdirOf(ws), ['for-each-ref', '--format=%(refname) %(objectname)']);
  assert.is(refs.code, 0, refs.stderr);
  const reflogFile = path.join(ws, '.mstore', 'reflog.jsonl');
  return {
    refs: refs.stdout,
    reflog: existsSync(reflogFile) ? readFileSync(reflogFile, 'utf8') : '',
    packs: listing(path.join(ws, '.mstore', 'packs')),
  };
}

const logVersions = (ws: string, rev?: string): string[] => mstoreJson<LogJson[]>(ws, rev ? ['log', rev] : ['log']).map((e) => e.version);
const tagList = (ws: string): string[] => git(gitdirOf(ws), ['tag', '-l']).stdout.trim().split('\n').filter(Boolean).sort();
const revParse = (gitdir: string, rev: string): string => git(gitdir, ['rev-parse', '--verify', '--quiet', rev]).stdout.trim();

/** Three versions whose model weights all differ (so gc can really free v002's data). */
function threeVersions(ws: string): { commits: CommitJson[]; digests: Map<string, string>[]; modelOids: string[] } {
  assert.is(mstore(ws, ['init']).code, 0);
  const commits: CommitJson[] = [];
  const digests: Map<string, string>[] = [];
  const modelOids: string[] = [];
  for (let v = 1; v <= 3; v++) {
    writeModelDir(ws, { tensors: layerTensors(3, 64, 128, v * 10), step: v });
    commits.push(commitAt(ws, `version ${v}`, `2025-01-0${v}T10:00:00Z`));
    digests.push(treeDigest(ws));
    modelOids.push(sha256File(path.join(ws, 'model.safetensors')));
  }
  assert.equal(commits.map((c) => c.version), ['v001', 'v002', 'v003']);
  return { commits, digests, modelOids };
}

test('rm without --confirm only shows the plan; rm --confirm without a backup store refuses and changes nothing', () => {
  const ws = tmpDir();
  try {
    threeVersions(ws);
    const before = storeState(ws);
    assert.ok(before.refs.includes('refs/tags/v002 '));
    assert.ok(before.packs.length > 0);

    const plan = mstore(ws, ['rm', 'v002']);
    assert.is(plan.code, 0, plan.stderr);
    assert.match(plan.stdout, /would remove v002/);
    assert.match(plan.stdout, /nothing removed/);
    assert.equal(storeState(ws), before, 'rm without --confirm changed the store');
    const planJson = mstoreJson<{ dryRun: boolean; versions: { name: string }[] }>(ws, ['rm', 'v002']);
    assert.is(planJson.dryRun, true);
    assert.equal(planJson.versions.map((v) => v.name), ['v002']);

    const r = mstore(ws, ['rm', 'v002', '--confirm']);
    assert.is(r.code, 1, `rm --confirm without a backup store exited ${r.code}: ${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.is(lines.length, 1, `stderr is not one line: ${r.stderr}`);
    assert.ok(lines[0].includes('mstore backup add NAME PATH'), lines[0]);
    assert.ok(lines[0].includes('--no-backup'), lines[0]);
    assert.is(r.stdout, '');
    assert.equal(storeState(ws), before, 'a refused rm changed the store');
    assert.equal(logVersions(ws), ['v003', 'v002', 'v001']);
    assert.ok(tagList(ws).includes('v002'));

    // --no-backup removes loudly; two versions at once, the line head goes back past both.
    const c1 = revParse(gitdirOf(ws), 'v001^{commit}');
    const c3 = revParse(gitdirOf(ws), 'v003^{commit}');
    const nb = mstore(ws, ['rm', 'v003', 'v002', '--confirm', '--no-backup']);
    assert.is(nb.code, 0, nb.stderr);
    assert.match(nb.stderr, /WITHOUT a backup/);
    assert.equal(logVersions(ws), ['v001']);
    assert.is(revParse(gitdirOf(ws), 'refs/heads/latest'), c1);
    assert.equal(tagList(ws), ['v001']);
    assert.is(mstore(ws, ['restore', 'v003']).code, 0);
    assert.is(revParse(gitdirOf(ws), 'refs/heads/latest'), c3, 'restore v003 did not move latest back');
    assert.equal(logVersions(ws), ['v003', 'v001']);
    assert.is(mstore(ws, ['restore', 'v002']).code, 0);
    assert.equal(logVersions(ws), ['v003', 'v002', 'v001']);
    assert.is(storeState(ws).refs, before.refs, 'rm then restore of both did not give back the same refs');
    assert.equal(storeState(ws).packs, before.packs);
  } finally {
    cleanup(ws);
  }
});

test('backup add/list, rm with a verified backup, reflog, restore in grace, gc, backup restore byte for byte', () => {
  const ws = tmpDir();
  const bdir = tmpDir('mstore-backup-');
  const other = tmpDir('mstore-other-');
  const out = tmpDir('mstore-out-');
  try {
    const { commits, digests } = threeVersions(ws);
    const [c1, c2, c3] = commits;
    const disk2 = path.join(bdir, 'disk2');

    // backup add: not the store itself, not twice under one name.
    for (const self of [ws, path.join(ws, '.mstore')]) {
      const r = mstore(ws, ['backup', 'add', 'self', self]);
      assert.ok(r.code === 1 || r.code === 2, `backup add of the store itself (${self}) exited ${r.code}`);
      assert.match(r.stderr, /own backup/);
    }
    const add = mstore(ws, ['backup', 'add', 'disk2', disk2]);
    assert.is(add.code, 0, add.stderr);
    assert.match(add.stdout, /created/);
    const again = mstore(ws, ['backup', 'add', 'disk2', path.join(other, 'x')]);
    assert.is(again.code, 1, `second backup add disk2 exited ${again.code}`);
    assert.match(again.stderr, /already exists/);
    assert.not.ok(existsSync(path.join(other, 'x')), 'a refused backup add created a store');
    let list = mstoreJson<BackupListJson>(ws, ['backup', 'list']);
    assert.equal(Object.keys(list.stores), ['disk2']);
    assert.is(list.stores.disk2.path, disk2);
    assert.is(list.default, 'disk2');
    assert.equal(list.backups, []);

    // a user tag on v002, then rm it.
    assert.is(mstore(ws, ['tag', 'prod', 'v002']).code, 0);
    const v002TagObj = revParse(gitdirOf(ws), 'refs/tags/v002');
    assert.ok(v002TagObj);
    const rm = mstore(ws, ['rm', 'v002', '--confirm']);
    assert.is(rm.code, 0, rm.stderr);
    assert.match(rm.stdout, /Removed v002/);
    assert.equal(logVersions(ws), ['v003', 'v001']);
    assert.equal(tagList(ws), ['v001', 'v003']);
    const show = mstore(ws, ['show', 'v002']);
    assert.is(show.code, 1, 'v002 still resolves after rm');

    // the record of the backup, and the backup store itself.
    list = mstoreJson<BackupListJson>(ws, ['backup', 'list']);
    assert.is(list.backups.length, 1);
    const rec = list.backups[0];
    assert.is(rec.type, 'pre_deletion');
    assert.is(rec.verified, true);
    assert.is(rec.name, 'disk2');
    assert.equal(rec.versions, [{ name: 'v002', commit: c2.commit }]);
    assert.ok(rec.verifiedBytes > 0);
    const bgit = path.join(disk2, 'git');
    const fsck = git(bgit, ['fsck', '--strict']);
    assert.is(fsck.code, 0, fsck.stderr);
    assert.is(revParse(bgit, 'v002^{commit}'), c2.commit);
    assert.is(revParse(bgit, 'prod^{commit}'), c2.commit, 'the user tag went to the backup with its version');

    // the ref history.
    const hist = mstoreJson<RefLogJson[]>(ws, ['reflog', 'v002']);
    assert.ok(hist.length >= 2);
    assert.is(hist[0].ref, 'refs/tags/v002');
    assert.is(hist[0].reason, 'rm');
    assert.is(hist[0].old, v002TagObj);
    assert.is(hist[0].new, null);
    assert.is(hist[hist.length - 1].reason, 'commit');
    assert.is(hist[hist.length - 1].old, null);
    assert.is(hist[hist.length - 1].new, v002TagObj);
    const prodHist = mstoreJson<RefLogJson[]>(ws, ['reflog', 'prod']);
    assert.is(prodHist[0].reason, 'rm');
    assert.is(prodHist[0].op, hist[0].op, 'the tags removed by one rm share an op id');

    // gc with the default grace period keeps what was just removed; restore within it: same commit, user tag back.
    const gcGrace = mstore(ws, ['gc']);
    assert.is(gcGrace.code, 0, gcGrace.stderr);
    const rs = mstore(ws, ['restore', 'v002']);
    assert.is(rs.code, 0, rs.stderr);
    assert.equal(logVersions(ws), ['v003', 'v002', 'v001']);
    assert.is(revParse(gitdirOf(ws), 'v002^{commit}'), c2.commit);
    assert.is(revParse(gitdirOf(ws), 'refs/tags/v002'), v002TagObj);
    assert.is(revParse(gitdirOf(ws), 'prod^{commit}'), c2.commit, 'restore did not bring back the user tag');
    assert.equal(mstoreJson<LogJson[]>(ws, ['log'])[1].tags, ['prod']);
    assert.is(mstoreJson<RefLogJson[]>(ws, ['reflog', 'v002'])[0].reason, 'restore');

    // rm of the latest version moves `latest` back; restore moves it forward again.
    assert.is(mstore(ws, ['rm', 'v003', '--confirm']).code, 0);
    assert.is(revParse(gitdirOf(ws), 'refs/heads/latest'), c2.commit, 'rm v003 did not move latest to v002');
    assert.is(mstoreJson<{ version: string }>(ws, ['show', 'latest']).version, 'v002');
    const latestHist = mstoreJson<RefLogJson[]>(ws, ['reflog', 'latest']);
    assert.equal([latestHist[0].reason, latestHist[0].old, latestHist[0].new], ['rm', c3.commit, c2.commit]);
    assert.is(mstore(ws, ['restore', 'v003']).code, 0);
    assert.is(revParse(gitdirOf(ws), 'refs/heads/latest'), c3.commit, 'restore v003 did not move latest back');
    assert.equal(logVersions(ws), ['v003', 'v002', 'v001']);

    // rm v002 again, gc with no grace: the local data is gone, restore refuses, the backup brings it back.
    assert.is(mstore(ws, ['rm', 'v002', '--confirm']).code, 0);
    const gc = mstore(ws, ['gc', '--grace', '0']);
    assert.is(gc.code, 0, gc.stderr);
    const gone = mstore(ws, ['restore', 'v002']);
    assert.is(gone.code, 1, `restore after gc exited ${gone.code}: ${gone.stdout}`);
    assert.match(gone.stderr, /backup restore/);
    assert.not.ok(tagList(ws).includes('v002'));
    const checkoutGone = mstore(ws, ['checkout', c2.commit, '--to', path.join(out, 'gone')]);
    assert.is(checkoutGone.code, 1, 'v002 content still checks out after gc --grace 0');

    const br = mstore(ws, ['backup', 'restore', 'disk2', 'v002']);
    assert.is(br.code, 0, br.stderr);
    assert.equal(logVersions(ws), ['v003', 'v002', 'v001']);
    assert.is(revParse(gitdirOf(ws), 'v002^{commit}'), c2.commit);
    assert.is(mstoreJson<{ commit: string }>(ws, ['show', 'v002']).commit, c2.commit);
    assert.is(revParse(gitdirOf(ws), 'refs/heads/latest'), c3.commit, 'backup restore moved latest');
    const dest = path.join(out, 'v002');
    const co = mstore(ws, ['checkout', 'v002', '--to', dest]);
    assert.is(co.code, 0, co.stderr);
    assert.equal(treeDigest(dest), digests[1]);
    const fsckMain = git(gitdirOf(ws), ['fsck', '--strict']);
    assert.is(fsckMain.code, 0, fsckMain.stderr);
    const ver = mstore(ws, ['verify']);
    assert.is(ver.code, 0, `verify after gc and backup restore: ${ver.stdout}${ver.stderr}`);
    // the other versions were untouched by all of it.
    const dest1 = path.join(out, 'v001');
    assert.is(mstore(ws, ['checkout', 'v001', '--to', dest1]).code, 0);
    assert.equal(treeDigest(dest1), digests[0]);
    assert.is(revParse(gitdirOf(ws), 'v001^{commit}'), c1.commit);
  } finally {
    cleanup(ws);
    cleanup(bdir);
    cleanup(other);
    cleanup(out);
  }
});

interface PackEntryInfo {
  file: string;
  type: number;
  id: string;
  offset: number;
  length: number;
}

/** Every entry of every pack under packsDir, read from the packs' own tables (docs/format.md). */
function packEntries(packsDir: string): PackEntryInfo[] {
  const out: PackEntryInfo[] = [];
  for (const sub of readdirSync(packsDir).sort()) {
    for (const name of readdirSync(path.join(packsDir, sub)).sort()) {
      if (!name.endsWith('.pack')) continue;
      const file = path.join(packsDir, sub, name);
      const buf = readFileSync(file);
      assert.is(buf.subarray(0, 8).toString('latin1'), 'MSTPACK\x01');
      const count = buf.readUInt32LE(buf.length - 44 + 32);
      const table = buf.length - 44 - 37 * count;
      let offset = 8;
      for (let i = 0; i < count; i++) {
        const t = table + i * 37;
        const length = buf.readUInt32LE(t + 1);
        out.push({ file, type: buf[t], id: buf.subarray(t + 5, t + 37).toString('hex'), offset, length });
        offset += length;
      }
      assert.is(offset, table, `${file}: entries do not end where the table starts`);
    }
  }
  return out;
}

test('backup of all versions and an emergency backup are recorded; a backup copy that fails verification aborts rm', () => {
  const ws = tmpDir();
  const bdir = tmpDir('mstore-backup-');
  try {
    const { commits, modelOids } = threeVersions(ws);
    const disk2 = path.join(bdir, 'disk2');
    assert.is(mstore(ws, ['backup', 'add', 'disk2', disk2]).code, 0);
    assert.is(mstore(ws, ['label', 'v002', 'status=failed', 'eval=0.91']).code, 0);
    const all = mstore(ws, ['backup']);
    assert.is(all.code, 0, all.stderr);
    const bgitNotes = (rev: string): string => git(path.join(disk2, 'git'), ['notes', 'show', `${rev}^{commit}`]).stdout;
    assert.equal(JSON.parse(bgitNotes('v002')), { eval: '0.91', status: 'failed' }, 'labels did not go to the backup with their versions');
    // A later label change reaches the backup with the next backup (the notes ref fast-forwards there).
    assert.is(mstore(ws, ['label', 'v001', 'status=completed']).code, 0);
    const em = mstore(ws, ['backup', '--type', 'emergency', '--reason', 'x', 'v001']);
    assert.is(em.code, 0, em.stderr);
    assert.equal(JSON.parse(bgitNotes('v001')), { status: 'completed' });
    assert.is(revParse(path.join(disk2, 'git'), 'refs/notes/commits'), revParse(gitdirOf(ws), 'refs/notes/commits'));
    const list = mstoreJson<BackupListJson>(ws, ['backup', 'list']);
    assert.is(list.backups.length, 2);
    assert.is(list.backups[0].type, 'manual');
    assert.is(list.backups[0].verified, true);
    assert.equal(list.backups[0].versions, commits.map((c) => ({ name: c.version, commit: c.commit })));
    assert.is(list.backups[1].type, 'emergency');
    assert.is(list.backups[1].reason, 'x');
    assert.is(list.backups[1].verified, true);
    assert.equal(list.backups[1].versions, [{ name: 'v001', commit: commits[0].commit }]);
    const bgit = path.join(disk2, 'git');
    const fsck = git(bgit, ['fsck', '--strict']);
    assert.is(fsck.code, 0, fsck.stderr);
    for (const c of commits) assert.is(revParse(bgit, `${c.version}^{commit}`), c.commit);

    // Damage v002's weights in the backup store: the last chunk of its model.safetensors.
    const entries = packEntries(path.join(disk2, 'packs'));
    const fileEntry = entries.find((e) => e.type === 2 && e.id === modelOids[1]);
    assert.ok(fileEntry, 'v002 model.safetensors has no file manifest in the backup packs');
    const manifest = readFileSync(fileEntry.file).subarray(fileEntry.offset, fileEntry.offset + fileEntry.length);
    assert.is(manifest.length % 36, 0);
    const lastChunk = manifest.subarray(manifest.length - 36, manifest.length - 4).toString('hex');
    const chunk = entries.find((e) => e.type === 1 && e.id === lastChunk);
    assert.ok(chunk, 'the chunk is not in the backup packs');
    const pack = readFileSync(chunk.file);
    const at = chunk.offset + Math.floor(chunk.length / 2);
    pack[at] ^= 0x40;
    writeFileSync(chunk.file, pack);
    assert.is.not(createHash('sha256').update(pack.subarray(chunk.offset, chunk.offset + chunk.length)).digest('hex'), lastChunk);

    const before = storeState(ws);
    const rm = mstore(ws, ['rm', 'v002', '--confirm']);
    assert.is(rm.code, 1, `rm with a damaged backup exited ${rm.code}: ${rm.stdout}`);
    assert.match(rm.stderr, /failed verification/);
    assert.match(rm.stderr, /nothing removed/);
    assert.equal(storeState(ws), before, 'refs, ref history or packs changed although the backup failed');
    assert.equal(logVersions(ws), ['v003', 'v002', 'v001']);
    assert.ok(tagList(ws).includes('v002'));
    // no new record claims a backup that did not verify.
    let after = mstoreJson<BackupListJson>(ws, ['backup', 'list']);
    assert.is(after.backups.length, 2);
    // a plain backup of v002 to the damaged store fails the same way, and records nothing
    const b2 = mstore(ws, ['backup', 'v002']);
    assert.is(b2.code, 1, `backup to a damaged store exited ${b2.code}: ${b2.stdout}`);
    assert.match(b2.stderr, /failed verification/);
    after = mstoreJson<BackupListJson>(ws, ['backup', 'list']);
    assert.is(after.backups.length, 2);
    // v001 and v003 do not use the damaged chunk: rm v001 still works
    assert.is(mstore(ws, ['rm', 'v001', '--confirm']).code, 0);
    assert.equal(logVersions(ws), ['v003', 'v002']);
    // Labels set in the backup store itself are kept there, and the backup says so.
    assert.is(mstore(disk2, ['label', 'v003', 'eval=0.5']).code, 0);
    const theirs = revParse(path.join(disk2, 'git'), 'refs/notes/commits');
    assert.is(mstore(ws, ['label', 'v003', 'eval=0.7']).code, 0);
    const kept = mstoreJson<{ kept: string[] }>(ws, ['backup', 'v003']);
    assert.equal(kept.kept, ['refs/notes/commits']);
    assert.is(revParse(path.join(disk2, 'git'), 'refs/notes/commits'), theirs, "the backup store's own labels were overwritten");
    assert.match(mstore(ws, ['backup', 'v003']).stdout, /Left as they are in 'disk2' \(they moved on there\): refs\/notes\/commits/);
  } finally {
    cleanup(ws);
    cleanup(bdir);
  }
});

test('version numbers are never reused; reflog entries have their fields; restore of what was never deleted fails', () => {
  const ws = tmpDir();
  try {
    const { commits } = threeVersions(ws);
    const rm = mstore(ws, ['rm', 'v003', '--confirm', '--no-backup']);
    assert.is(rm.code, 0, rm.stderr);
    assert.match(rm.stderr, /WITHOUT a backup/);
    assert.equal(logVersions(ws), ['v002', 'v001']);
    writeFileSync(path.join(ws, 'notes.txt'), 'after rm');
    const c4 = commitAt(ws, 'after rm', '2025-01-05T10:00:00Z');
    assert.is(c4.version, 'v004', 'the number of a removed version was reused');
    assert.equal(logVersions(ws), ['v004', 'v002', 'v001']);
    const parent = revParse(gitdirOf(ws), 'v004^');
    assert.is(parent, commits[1].commit, 'v004 does not follow the moved line head');

    const all = mstoreJson<RefLogJson[]>(ws, ['reflog']);
    assert.ok(all.length >= 8);
    for (const e of all) {
      assert.equal(Object.keys(e).filter((k) => k !== 'message').sort(), ['new', 'old', 'op', 'reason', 'ref', 'time']);
      assert.ok(!Number.isNaN(Date.parse(e.time)), e.time);
      assert.match(e.op, /^[0-9a-f]+$/);
    }
    // newest first: the v004 commit moved its tag and latest.
    assert.equal(all.slice(0, 2).map((e) => e.reason), ['commit', 'commit']);
    assert.equal(all.slice(0, 2).map((e) => e.ref).sort(), ['refs/heads/latest', 'refs/tags/v004']);
    assert.is(all[0].time, '2025-01-05T10:00:00.000Z');
    const rmEntries = all.filter((e) => e.reason === 'rm');
    assert.equal(rmEntries.map((e) => e.ref).sort(), ['refs/heads/latest', 'refs/tags/v003']);
    assert.is(rmEntries[0].op, rmEntries[1].op);
    assert.is(rmEntries.find((e) => e.ref === 'refs/heads/latest')!.new, commits[1].commit);
    assert.is(mstoreJson<RefLogJson[]>(ws, ['reflog', '-n', '1']).length, 1);

    for (const name of ['v001', 'nosuch', 'v004']) {
      const r = mstore(ws, ['restore', name]);
      assert.is(r.code, 1, `restore ${name} exited ${r.code}`);
      assert.match(r.stderr, /^mstore: error: /);
    }
    // v003's number is taken by a removed version; restoring it puts it back beside v004.
    assert.is(mstore(ws, ['restore', 'v003']).code, 0);
    assert.equal(logVersions(ws), ['v004', 'v002', 'v001'], 'latest is on v004; v003 is on a side branch');
    assert.is(revParse(gitdirOf(ws), 'v003^{commit}'), commits[2].commit);
    assert.is(revParse(gitdirOf(ws), 'refs/heads/latest'), c4.commit, 'restore v003 moved latest off v004');
  } finally {
    cleanup(ws);
  }
});

// ---- prune vs restic forget ----

/** Go's time.AddDate(-y, -m, -d).Add(-h): calendar fields subtracted, then normalized (UTC). */
function goCutoff(latest: Date, y: number, m: number, d: number, h: number): number {
  const t = Date.UTC(
    latest.getUTCFullYear() - y,
    latest.getUTCMonth() - m,
    latest.getUTCDate() - d,
    latest.getUTCHours(),
    latest.getUTCMinutes(),
    latest.getUTCSeconds(),
    latest.getUTCMilliseconds(),
  );
  return t - h * 3_600_000;
}

interface Snap {
  version: string;
  time: string;
  tags: string[];
}

/** restic forget's decision over one group: the set of versions it removes. */
function resticRemoves(group: Snap[], policy: { last?: number; within?: [number, number, number, number]; tagGlob?: RegExp }): string[] {
  const sorted = [...group].sort((a, b) => Date.parse(b.time) - Date.parse(a.time));
  const latest = new Date(sorted[0].time);
  const cutoff = policy.within ? goCutoff(latest, ...policy.within) : 0;
  const removed: string[] = [];
  sorted.forEach((s, i) => {
    let keep = false;
    if (policy.last !== undefined && i < policy.last) keep = true;
    if (policy.within && Date.parse(s.time) > cutoff) keep = true;
    if (policy.tagGlob && s.tags.some((t) => policy.tagGlob!.test(t))) keep = true;
    if (!keep) removed.push(s.version);
  });
  return removed.sort();
}

const MAIN_DATES = [
  '2025-01-01T00:00:00Z', // 89.5 days before the newest
  '2025-01-10T09:30:00Z',
  '2025-01-22T08:00:00Z',
  '2025-02-05T17:45:00Z',
  '2025-02-14T23:59:59Z',
  '2025-02-27T06:00:00Z',
  '2025-03-01T12:00:00Z', // exactly 30 days before the newest: restic removes it (strictly after)
  '2025-03-01T12:00:01Z', // one second later: within
  '2025-03-02T12:00:00Z', // within 30d; not within 1m (2025-03-31 minus one month normalizes to 2025-03-03)
  '2025-03-10T00:00:00Z',
  '2025-03-20T15:00:00Z',
  '2025-03-31T12:00:00Z', // the newest
];
const EXP_DATES = ['2025-01-05T00:00:00Z', '2025-01-25T00:00:00Z', '2025-02-01T00:00:00Z', '2025-02-20T00:00:00Z'];

/** Runs a command to completion (asynchronously, so restic can work while mstore commits). */
function runAsync(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${stderr}`))));
  });
}

/**
 * Real restic, same dates, one snapshot per version; forget --dry-run --json for each policy;
 * the removed snapshot times (ms, ascending). Undefined when restic is not installed.
 */
async function resticForget(dates: string[], policies: string[][]): Promise<number[][] | undefined> {
  if (spawnSync('which', ['restic']).status !== 0) return undefined;
  const dir = tmpDir('mstore-restic-');
  try {
    const env = { ...process.env, RESTIC_PASSWORD: 'x', RESTIC_REPOSITORY: path.join(dir, 'repo'), TZ: 'UTC', RESTIC_CACHE_DIR: path.join(dir, 'cache') };
    await runAsync('restic', ['init', '-q'], env);
    const data = path.join(dir, 'data');
    mkdirSync(data);
    writeFileSync(path.join(data, 'notes.txt'), 'a small directory');
    // restic backups of one repository may run at once (non-exclusive locks).
    await Promise.all(dates.map((d) => runAsync('restic', ['backup', '-q', '--host', 'h', '--time', d.replace('T', ' ').replace('Z', ''), data], env)));
    const out: number[][] = [];
    for (const p of policies) {
      const groups = JSON.parse(await runAsync('restic', ['forget', '--dry-run', '--json', ...p], env)) as { keep: { time: string }[] | null; remove: { time: string }[] | null }[];
      assert.is(groups.length, 1);
      assert.is((groups[0].keep ?? []).length + (groups[0].remove ?? []).length, dates.length);
      out.push((groups[0].remove ?? []).map((s) => Date.parse(s.time)).sort((a, b) => a - b));
    }
    return out;
  } finally {
    cleanup(dir);
  }
}

test('prune removes exactly what restic forget would (keep-last, keep-within with calendar arithmetic, keep-tag, lines)', async () => {
  const ws = tmpDir();
  const bdir = tmpDir('mstore-backup-');
  // the oracle, when installed, works while the store is built
  const resticPolicies = [
    ['--keep-last', '2', '--keep-within', '30d'],
    ['--keep-last', '2', '--keep-within', '1m'],
    ['--keep-within', '30d12h'],
  ];
  const resticRun = resticForget(MAIN_DATES, resticPolicies);
  resticRun.catch(() => undefined);
  try {
    assert.is(mstore(ws, ['init']).code, 0);
    writeModelDir(ws, { tensors: layerTensors(2, 32, 64, 1) });
    // Commit in date order, the two lines interleaved.
    const all = [...MAIN_DATES.map((d) => ({ d, line: 'main' })), ...EXP_DATES.map((d) => ({ d, line: 'exp' }))].sort((a, b) => Date.parse(a.d) - Date.parse(b.d));
    const snaps = new Map<string, Snap[]>([['main', []], ['exp', []]]);
    const commitOf = new Map<string, string>();
    for (const { d, line } of all) {
      writeFileSync(path.join(ws, 'notes.txt'), `${line} ${d}`);
      const c = commitAt(ws, `${line} at ${d}`, d, line === 'main' ? [] : ['--line', 'exp']);
      snaps.get(line)!.push({ version: c.version, time: d, tags: [] });
      commitOf.set(c.version, c.commit);
      await new Promise(setImmediate); // lets the restic steps move on between commits
    }
    const main = snaps.get('main')!;
    const exp = snaps.get('exp')!;
    assert.equal(main.map((s) => s.version), MAIN_DATES.map((_, i) => `v${String(i + 1).padStart(3, '0')}`));
    assert.equal(exp.map((s) => s.version), ['exp/v001', 'exp/v002', 'exp/v003', 'exp/v004']);
    // created is the pinned clock
    const logged = mstoreJson<LogJson[]>(ws, ['log']);
    assert.equal(logged.map((e) => Date.parse(e.date)), [...MAIN_DATES].reverse().map((d) => Date.parse(d)));

    // user tags: one matching prod*, one not
    assert.is(mstore(ws, ['tag', 'prod-jan', 'v002']).code, 0);
    assert.is(mstore(ws, ['tag', 'staging', 'v004']).code, 0);
    main[1].tags.push('prod-jan');
    main[3].tags.push('staging');

    // an empty policy is a usage error, and changes nothing
    const before = storeState(ws);
    const empty = mstore(ws, ['prune']);
    assert.is(empty.code, 2, `prune with no keep option exited ${empty.code}`);
    assert.is(mstore(ws, ['prune', '--execute', '--no-backup']).code, 2);
    assert.equal(storeState(ws), before);

    const plan = (args: string[]): PrunePlanJson => {
      const p = mstoreJson<PrunePlanJson>(ws, ['prune', ...args]);
      assert.is(p.dryRun, true);
      return p;
    };
    const removedOf = (p: PrunePlanJson, line: string) => p.remove.filter((d) => d.line === line).map((d) => d.version).sort();
    const keptOf = (p: PrunePlanJson, line: string) => p.keep.filter((d) => d.line === line).map((d) => d.version).sort();
    const check = (args: string[], policy: Parameters<typeof resticRemoves>[1], expectMain: string[], expectExp: string[]) => {
      const p = plan(args);
      assert.equal(resticRemoves(main, policy), expectMain, `my own restic model disagrees with the hand-computed set for ${args.join(' ')}`);
      assert.equal(resticRemoves(exp, policy), expectExp, `my own restic model disagrees for exp, ${args.join(' ')}`);
      assert.equal(removedOf(p, 'main'), expectMain, `prune ${args.join(' ')}: main removed`);
      assert.equal(removedOf(p, 'exp'), expectExp, `prune ${args.join(' ')}: exp removed`);
      assert.equal(keptOf(p, 'main'), main.map((s) => s.version).filter((v) => !expectMain.includes(v)).sort());
      assert.equal(keptOf(p, 'exp'), exp.map((s) => s.version).filter((v) => !expectExp.includes(v)).sort());
      assert.is(git(gitdirOf(ws), ['for-each-ref', '--format=%(refname) %(objectname)']).stdout, before.refs, 'a dry run moved refs');
      return p;
    };

    // keep-last 2 + keep-within 30d: main cutoff 2025-03-01T12:00:00Z (exclusive); exp cutoff 2025-01-21 (its own newest).
    const p30 = check(['--keep-last', '2', '--keep-within', '30d'], { last: 2, within: [0, 0, 30, 0] }, ['v001', 'v002', 'v003', 'v004', 'v005', 'v006', 'v007'], ['exp/v001']);
    const v008 = p30.keep.find((d) => d.version === 'v008')!;
    assert.ok(v008.reasons.some((r) => r.includes('within')), `v008 reasons: ${v008.reasons}`);
    // one month back from March 31 is March 3 (Go normalizes February 31): v009 (March 2) goes too.
    const p1m = check(['--keep-last', '2', '--keep-within', '1m'], { last: 2, within: [0, 1, 0, 0] }, ['v001', 'v002', 'v003', 'v004', 'v005', 'v006', 'v007', 'v008', 'v009'], ['exp/v001']);
    // hours: 30d12h back from 2025-03-31T12:00 is 2025-03-01T00:00
    const p3012 = check(['--keep-within', '30d12h'], { within: [0, 0, 30, 12] }, ['v001', 'v002', 'v003', 'v004', 'v005', 'v006'], ['exp/v001']);
    // keep-tag with a glob keeps v002 (prod-jan), not v004 (staging)
    check(['--keep-last', '2', '--keep-within', '30d', '--keep-tag', 'prod*'], { last: 2, within: [0, 0, 30, 0], tagGlob: /^prod.*$/ }, ['v001', 'v003', 'v004', 'v005', 'v006', 'v007'], ['exp/v001']);
    check(['--keep-last', '3'], { last: 3 }, ['v001', 'v002', 'v003', 'v004', 'v005', 'v006', 'v007', 'v008', 'v009'], ['exp/v001']);
    // --line selects one group
    const onlyExp = plan(['--keep-last', '2', '--line', 'exp']);
    assert.equal(onlyExp.remove.map((d) => d.version).sort(), ['exp/v001', 'exp/v002']);
    assert.equal(onlyExp.keep.map((d) => d.version).sort(), ['exp/v003', 'exp/v004']);

    // the oracle itself, when installed
    const restic = await resticRun;
    if (restic) {
      const timesOf = (p: PrunePlanJson) => p.remove.filter((d) => d.line === 'main').map((d) => Date.parse(d.created)).sort((a, b) => a - b);
      assert.equal(timesOf(p30), restic[0], 'restic forget --keep-last 2 --keep-within 30d disagrees');
      assert.equal(timesOf(p1m), restic[1], 'restic forget --keep-last 2 --keep-within 1m disagrees');
      assert.equal(timesOf(p3012), restic[2], 'restic forget --keep-within 30d12h disagrees');
      assert.is(restic[0].length, 7);
    } else {
      console.log('  (restic not installed: the real-restic comparison is skipped)');
    }

    // execute on one line, without a backup
    const ex = mstore(ws, ['prune', '--keep-last', '2', '--line', 'exp', '--execute', '--no-backup']);
    assert.is(ex.code, 0, ex.stderr);
    assert.equal(logVersions(ws, 'exp/latest'), ['exp/v004', 'exp/v003']);
    assert.is(logVersions(ws).length, MAIN_DATES.length, 'prune --line exp touched main');
    assert.equal(mstoreJson<RefLogJson[]>(ws, ['reflog', 'exp/v001'])[0].reason, 'prune');

    // execute on every line, with a backup store
    assert.is(mstore(ws, ['backup', 'add', 'disk2', path.join(bdir, 'disk2')]).code, 0);
    const pr = mstore(ws, ['prune', '--keep-last', '2', '--keep-within', '30d', '--keep-tag', 'prod*', '--execute', '--json']);
    assert.is(pr.code, 0, pr.stderr);
    const done = JSON.parse(pr.stdout) as PrunePlanJson & { backup: BackupRecordJson | null };
    assert.is(done.dryRun, false);
    assert.equal(done.remove.map((d) => d.version).sort(), ['v001', 'v003', 'v004', 'v005', 'v006', 'v007']);
    assert.ok(done.backup);
    assert.is(done.backup!.type, 'pre_deletion');
    assert.is(done.backup!.verified, true);
    assert.equal(done.backup!.versions.map((v) => v.name), ['v001', 'v003', 'v004', 'v005', 'v006', 'v007']);
    assert.equal(logVersions(ws), ['v012', 'v011', 'v010', 'v009', 'v008', 'v002']);
    assert.equal(logVersions(ws, 'exp/latest'), ['exp/v004', 'exp/v003']);
    assert.equal(tagList(ws), ['exp/v003', 'exp/v004', 'prod-jan', 'v002', 'v008', 'v009', 'v010', 'v011', 'v012']);
    for (const v of ['v001', 'v003', 'v004', 'v005', 'v006', 'v007']) {
      assert.is(revParse(path.join(bdir, 'disk2', 'git'), `${v}^{commit}`), commitOf.get(v), `${v} is not in the backup`);
    }
    const pe = mstoreJson<RefLogJson[]>(ws, ['reflog', 'staging']);
    assert.is(pe[0].reason, 'prune', 'the user tag on a pruned version is removed with it');
    // pruning again removes nothing
    const again = plan(['--keep-last', '2', '--keep-within', '30d', '--keep-tag', 'prod*']);
    assert.equal(again.remove, []);
    // and the numbers of pruned versions stay taken
    writeFileSync(path.join(ws, 'notes.txt'), 'after prune');
    assert.is(commitAt(ws, 'after prune', '2025-04-01T00:00:00Z').version, 'v013');
  } finally {
    await resticRun.catch(() => undefined);
    cleanup(ws);
    cleanup(bdir);
  }
});

test.run();
