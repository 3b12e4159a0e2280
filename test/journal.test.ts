/**
 * The append-only journals (src/lib/journal.ts): the module itself (missing and empty files,
 * a torn last line, reading the tail of a large file without reading the rest), then each of
 * the three journals end to end: its last line torn as a crash mid-append leaves it, the next
 * record appended by the command that writes it, every complete record read back by the
 * command that reads it (ref history: tag, reflog; backups: backup, backup list; deploy
 * attempts: deploy, deploy status); and finishing the last push after a crash, which reads
 * the ref history from its end.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { appendFileSync, closeSync, existsSync, openSync, readFileSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { appendRecords, readRecords, recordsFromEnd } from '../src/lib/journal.js';
import { finishLastOperation, type RefLogEntry } from '../src/repo/reflog.js';
import { Store } from '../src/repo/store.js';
import { cleanup, git, layerTensors, mstore, mstoreJson, tmpDir, writeModelDir } from './helpers.js';
import { ENV, commitVersion, ok, status, withBox } from './deploy-helpers.js';

interface Rec {
  n: number;
  text?: string;
}

async function fromEnd<T>(file: string, chunk?: number, limit = Infinity): Promise<T[]> {
  const out: T[] = [];
  for await (const r of recordsFromEnd<T>(file, chunk)) {
    if (out.length >= limit) break;
    out.push(r);
  }
  return out;
}

/** Runs `fn` on a path in a fresh temporary directory (the file is not created). */
async function withFile(name: string, fn: (file: string) => Promise<void>): Promise<void> {
  const dir = tmpDir('mstore-journal-');
  try {
    await fn(path.join(dir, name));
  } finally {
    cleanup(dir);
  }
}

/**
 * Cuts the file in the middle of its last line, as a crash mid-append leaves it. Returns the
 * file's bytes before that line (what must stay) and the torn bytes.
 */
function tearLastLine(file: string): { kept: string; torn: string } {
  const text = readFileSync(file, 'utf8');
  assert.ok(text.endsWith('\n'), `${file} does not end with a newline`);
  const start = text.lastIndexOf('\n', text.length - 2) + 1;
  const cut = start + Math.floor((text.length - 1 - start) / 2);
  truncateSync(file, Buffer.byteLength(text.slice(0, cut)));
  return { kept: text.slice(0, start), torn: text.slice(start, cut) };
}

/** A store in `ws` with versions v001..v00N of a small model. */
function storeWithVersions(ws: string, n: number): void {
  ok(ws, ['init']);
  for (let v = 1; v <= n; v++) {
    writeModelDir(ws, { tensors: layerTensors(2, 64, 128, v * 10), step: v });
    ok(ws, ['commit', '-m', `version ${v}`]);
  }
}

test('journal: a missing file has no records; the first append creates it and its directory', () =>
  withFile('a/b/records.jsonl', async (file) => {
    assert.equal(await readRecords(file), []);
    assert.equal(await fromEnd(file), []);
    assert.not.ok(existsSync(file));
    await appendRecords<Rec>(file, []);
    assert.not.ok(existsSync(file), 'an append of nothing created the file');
    await appendRecords<Rec>(file, [{ n: 1 }, { n: 2 }]);
    assert.is(readFileSync(file, 'utf8'), '{"n":1}\n{"n":2}\n');
    assert.equal(await readRecords(file), [{ n: 1 }, { n: 2 }]);
  }),
);

test('journal: an empty file has no records and gets no leading newline', () =>
  withFile('records.jsonl', async (file) => {
    writeFileSync(file, '');
    assert.equal(await readRecords(file), []);
    assert.equal(await fromEnd(file), []);
    await appendRecords<Rec>(file, [{ n: 1 }]);
    assert.is(readFileSync(file, 'utf8'), '{"n":1}\n');
  }),
);

test('journal: a torn last line is skipped, and the next append starts on a fresh line', () =>
  withFile('records.jsonl', async (file) => {
    writeFileSync(file, '{"n":1}\n{"n":2,"te');
    assert.equal(await readRecords(file), [{ n: 1 }]);
    assert.equal(await fromEnd(file), [{ n: 1 }]);
    await appendRecords<Rec>(file, [{ n: 3 }]);
    assert.is(readFileSync(file, 'utf8'), '{"n":1}\n{"n":2,"te\n{"n":3}\n', 'the bytes before the append changed');
    assert.equal(await readRecords(file), [{ n: 1 }, { n: 3 }]);
    assert.equal(await fromEnd(file), [{ n: 3 }, { n: 1 }]);
    // Torn right before its newline, the record is whole: it is read, and kept apart from the next.
    writeFileSync(file, '{"n":1}\n{"n":2}');
    assert.equal(await readRecords(file), [{ n: 1 }, { n: 2 }]);
    await appendRecords<Rec>(file, [{ n: 3 }]);
    assert.equal(await readRecords(file), [{ n: 1 }, { n: 2 }, { n: 3 }]);
    // What is not a JSON object is no record, wherever it is.
    writeFileSync(file, 'null\n{"n":1}\n3\n\n[1]\n\u0000\u0000\n{"n":2}\n');
    assert.equal(await readRecords(file), [{ n: 1 }, { n: 2 }]);
    assert.equal(await fromEnd(file, 3), [{ n: 2 }, { n: 1 }]);
  }),
);

test('journal: reading from the end of a large file gives every record newest first, and the last few read only the tail', () =>
  withFile('records.jsonl', async (file) => {
    // ~8 MiB of lines of many lengths, with multi-byte characters that chunk boundaries split, and torn lines.
    const fd = openSync(file, 'w');
    const all: Rec[] = [];
    for (let n = 0; n < 40_000; n++) {
      const r: Rec = { n, text: `${'模型é'.repeat(n % 37)}${'x'.repeat((n * 7919) % 300)}` };
      all.push(r);
      writeSync(fd, `${JSON.stringify(r)}\n`);
      if (n % 5000 === 4999) writeSync(fd, '{"n":-1,"text":"torn\n');
    }
    closeSync(fd);
    await appendRecords<Rec>(file, [{ n: 40_000 }]);
    all.push({ n: 40_000 });
    assert.equal(await readRecords<Rec>(file), all);
    const reversed = [...all].reverse();
    for (const chunk of [undefined, 4096, 333, 7]) {
      const got = chunk === 7 ? await fromEnd<Rec>(file, chunk, 2000) : await fromEnd<Rec>(file, chunk);
      assert.equal(got, chunk === 7 ? reversed.slice(0, 2000) : reversed, `chunk ${chunk ?? 'default'}`);
    }

    // The last 3 records read at most the last 64 KiB chunk, not the 8 MiB before it.
    const probe = await open(file, 'r');
    const proto = Object.getPrototypeOf(probe) as { read: (...a: unknown[]) => Promise<{ bytesRead: number }> };
    await probe.close();
    const read = proto.read;
    let bytes = 0;
    proto.read = async function (this: unknown, ...a: unknown[]) {
      const r = await read.apply(this, a);
      bytes += r.bytesRead;
      return r;
    };
    try {
      assert.equal(await fromEnd<Rec>(file, undefined, 3), reversed.slice(0, 3));
    } finally {
      proto.read = read;
    }
    assert.ok(bytes > 0 && bytes <= 64 * 1024, `read ${bytes} bytes of a ${readFileSync(file).length}-byte file for its last 3 records`);
  }),
);

test('ref history: a torn last line of reflog.jsonl; tag appends after it; reflog shows every complete entry and the new one', () => {
  const ws = tmpDir();
  try {
    storeWithVersions(ws, 2);
    ok(ws, ['tag', 'prod', 'v001']);
    const file = path.join(ws, '.mstore', 'reflog.jsonl');
    const before = mstoreJson<{ ref: string }[]>(ws, ['reflog']);
    assert.is(before[0].ref, 'refs/tags/prod');
    const { kept, torn } = tearLastLine(file);

    ok(ws, ['tag', 'staging', 'v002']);
    assert.is(readFileSync(file, 'utf8').slice(0, kept.length + torn.length), kept + torn, 'the journal was rewritten, not appended to');
    const after = mstoreJson<{ ref: string; reason: string }[]>(ws, ['reflog']);
    assert.equal(after.slice(1), before.slice(1), 'an earlier complete entry was lost');
    assert.is(after[0].ref, 'refs/tags/staging');
    assert.is(after[0].reason, 'tag');
    assert.equal(mstoreJson<{ ref: string }[]>(ws, ['reflog', '-n', '1']), after.slice(0, 1));
    // The journal keeps working: a commit reads it (the next version number) and appends.
    writeModelDir(ws, { tensors: layerTensors(2, 64, 128, 30), step: 3 });
    assert.is(mstoreJson<{ version: string }>(ws, ['commit', '-m', 'version 3']).version, 'v003');
    assert.is(mstoreJson<unknown[]>(ws, ['reflog']).length, after.length + 2);
  } finally {
    cleanup(ws);
  }
});

test('ref history: moves recorded but never made (a commit that failed at its refs) are shown as such; every other move as made', () => {
  const ws = tmpDir();
  try {
    storeWithVersions(ws, 1);
    const file = path.join(ws, '.mstore', 'reflog.jsonl');
    const v001 = git(path.join(ws, '.mstore', 'git'), ['rev-parse', 'refs/heads/latest']).stdout.trim();
    // What a commit whose first ref write failed leaves: its entries, written ahead, and no ref moved.
    const time = new Date().toISOString();
    const never = { time, old: null, new: 'ab'.repeat(20), reason: 'commit', op: 'f00df00df00d', message: 'version 2' };
    appendFileSync(file, `${JSON.stringify({ ...never, ref: 'refs/tags/v002' })}\n${JSON.stringify({ ...never, ref: 'refs/heads/latest', old: v001, new: 'cd'.repeat(20) })}\n`);
    writeModelDir(ws, { tensors: layerTensors(2, 64, 128, 40), step: 2 });
    assert.is(mstoreJson<{ version: string }>(ws, ['commit', '-m', 'version 2, again']).version, 'v003', 'numbers are never reused');
    const entries = mstoreJson<{ ref: string; op: string; happened?: boolean }[]>(ws, ['reflog']);
    const notMade = entries.filter((e) => e.happened === false);
    assert.equal(notMade.map((e) => e.ref).sort(), ['refs/heads/latest', 'refs/tags/v002']);
    assert.ok(notMade.every((e) => e.op === 'f00df00df00d'));
    assert.ok(entries.filter((e) => e.op !== 'f00df00df00d').every((e) => !('happened' in e)), 'every other move was made');
    assert.match(mstore(ws, ['reflog', 'v002']).stdout, /v002 .*\(did not happen\)/);
    assert.not.match(mstore(ws, ['reflog', 'v003']).stdout, /did not happen/);
  } finally {
    cleanup(ws);
  }
});

test('ref history: finishing the last push after a crash takes its trailing entries only (read from the end)', async () => {
  const ws = tmpDir();
  try {
    storeWithVersions(ws, 2);
    const gitdir = path.join(ws, '.mstore', 'git');
    const [c1, c2] = ['v001', 'v002'].map((v) => git(gitdir, ['rev-parse', `${v}^{commit}`]).stdout.trim());
    const entry = (ref: string, value: string, op: string): RefLogEntry => ({ time: new Date().toISOString(), ref, old: null, new: value, reason: 'push', op });
    // An earlier push whose move never happened (another op: left alone), then a push killed
    // after its first ref write, then the torn start of a line a later crash cut short.
    const file = path.join(ws, '.mstore', 'reflog.jsonl');
    await appendRecords(file, [entry('refs/heads/early', c1, 'aaaaaaaaaaaa'), entry('refs/heads/a', c1, 'bbbbbbbbbbbb'), entry('refs/heads/b', c2, 'bbbbbbbbbbbb')]);
    appendFileSync(file, '{"time":"2025-01-0');
    assert.is(git(gitdir, ['update-ref', 'refs/heads/a', c1]).code, 0);
    const store = await Store.find(ws);
    try {
      const done = await finishLastOperation(store);
      assert.equal(done.map((e) => e.ref), ['refs/heads/b']);
      assert.is(git(gitdir, ['rev-parse', 'refs/heads/b']).stdout.trim(), c2);
      assert.is(git(gitdir, ['rev-parse', '--verify', '--quiet', 'refs/heads/early']).code, 1, 'an earlier operation was finished');
      // The last operation a commit: nothing is done, however its refs stand.
      await appendRecords(file, [{ ...entry('refs/heads/c', c1, 'cccccccccccc'), reason: 'commit' }]);
      assert.equal(await finishLastOperation(store), []);
    } finally {
      await store.close();
    }
  } finally {
    cleanup(ws);
  }
});

test('backups: a torn last line of backups.jsonl; the next backup is recorded after it; backup list shows every complete record and the new one', () => {
  const ws = tmpDir();
  const bdir = tmpDir('mstore-backup-');
  try {
    storeWithVersions(ws, 2);
    ok(ws, ['backup', 'add', 'disk2', path.join(bdir, 'disk2')]);
    ok(ws, ['backup', 'v001']);
    ok(ws, ['backup', '--reason', 'torn', 'v002']);
    type List = { backups: { reason: string; versions: { name: string }[]; verified: boolean }[] };
    const before = mstoreJson<List>(ws, ['backup', 'list']).backups;
    assert.equal(before.map((b) => b.reason), ['', 'torn']);
    const file = path.join(ws, '.mstore', 'backups.jsonl');
    const { kept, torn } = tearLastLine(file);

    const r = mstore(ws, ['backup', '--reason', 'after the crash', 'v002']);
    assert.is(r.code, 0, r.stderr);
    assert.is(readFileSync(file, 'utf8').slice(0, kept.length + torn.length), kept + torn);
    const after = mstoreJson<List>(ws, ['backup', 'list']).backups;
    assert.is(after.length, 2, 'the record after the torn line was not read back');
    assert.equal(after[0], before[0]);
    assert.is(after[1].reason, 'after the crash');
    assert.equal(after[1].versions.map((v) => v.name), ['v002']);
    assert.is(after[1].verified, true);
  } finally {
    cleanup(ws);
    cleanup(bdir);
  }
});

test('deploy attempts: a torn last line of attempts.jsonl; the next deploy is recorded after it; deploy status shows every complete record and the new attempt', () =>
  withBox('mstore-journal-deploy-', async (b) => {
    await commitVersion(b.ws, 1);
    await commitVersion(b.ws, 10);
    ok(b.ws, ['deploy', 'box', 'v001']);
    const file = path.join(b.store, 'deploy', 'attempts.jsonl');
    const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { result: string });
    assert.equal(lines.map((l) => l.result), ['started', 'ok']);
    // The crash came while recording v001's outcome: its start is all that is complete.
    const { kept, torn } = tearLastLine(file);
    const v001 = status(b).history;
    assert.equal(v001.map((a) => [a.version, a.result]), [['v001', 'started']]);

    const d = mstore(b.ws, ['deploy', 'box', 'v002'], ENV);
    assert.is(d.code, 0, d.stderr);
    assert.is(readFileSync(file, 'utf8').slice(0, kept.length + torn.length), kept + torn);
    const history = status(b).history;
    assert.equal(history.map((a) => [a.version, a.result]), [['v002', 'ok'], ['v001', 'started']]);
    assert.equal(history[1], v001[0], 'the earlier complete record changed');
    // Both of v002's lines were read: its start (time, previous) merged with its outcome.
    assert.ok(history[0].finished, 'the started line of v002 was lost');
    assert.ok(history[0].time <= history[0].finished!, `started ${history[0].time}, finished ${history[0].finished}`);
  }),
);

test.run();
