/**
 * The S3-compatible transport (docs/protocol.md §3): a remote is a key prefix in a bucket.
 *
 *   mstore-remote.json          {"format":"mstore-s3/1"}; created with If-None-Match: *
 *   data/<id[0:2]>/<id>.pack    packs in the local pack format (docs/format.md §5)
 *   index/<id>.idx              the pack's table + footer, written only after its pack
 *   git/<sha1>                  loose git objects, written only after what they point at
 *   refs.json                   the whole ref table; replaced by compare-and-swap (If-Match)
 *
 * S3 has no transactions, so every invariant is an order of writes, restic-style: data
 * first, index after, refs last. The set of .idx objects is what the remote has; a push
 * killed at any moment leaves at most packs without an .idx (never read) and git objects
 * nothing references yet. This file is the Remote; s3-client.ts makes the requests (and
 * loads the AWS SDK lazily), s3-packs.ts builds and checks packs and .idx objects.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { deflate, inflate } from 'node:zlib';
import { MstoreError } from '../../lib/errors.js';
import { retry } from '../../lib/retry.js';
import { framedObjectLinks } from '../../format/git-links.js';
import { checkObjectId, checkOid, checkRefName, nonFastForward, type ObjectKind, type Remote, type RefUpdate, type SendResult, type UpdateRefsOptions, type WireObject } from '../remote.js';
import { MAX_OBJECT_BYTES, checkObject } from '../wire.js';
import { S3Bucket, failureStatus, mapLimit, slidingWindow, type S3Options } from './s3-client.js';
import { MAX_MANIFEST_BYTES, PACK_BUFFER_BYTES, addEntry, idxKey, packBytesFor, packKey, readIdx, sealPack, startPack, type Loc, type PackParts } from './s3-packs.js';

export { S3_PACK_BYTES } from './s3-packs.js';
export type { S3Options } from './s3-client.js';

export const S3_FORMAT = 'mstore-s3/1';
/** Parallel small requests (git objects, .idx reads, HEADs). */
const SMALL_PARALLEL = 16;
/** Range GETs in flight during fetch, and how big one may grow by coalescing neighbours. */
const RANGE_PARALLEL = 4;
const RANGE_MAX_BYTES = 16 * 1024 * 1024;
/** Neighbouring entries of one pack this close are read in one request (the gap is read and dropped). */
const RANGE_GAP_BYTES = 256 * 1024;
/** Below this many ids, `missing('git')` HEADs each; above, it lists git/ once (one request per 1000 keys). */
const GIT_HEAD_MAX = 64;
/** Hostile-input bounds: the largest refs.json, .idx, git object (deflated and inflated). */
const MAX_JSON_BYTES = 16 * 1024 * 1024;
const MAX_IDX_BYTES = 64 * 1024 * 1024;
const MAX_GIT_BYTES = 256 * 1024 * 1024;
/** Compare-and-swap attempts on refs.json before giving up (RGW answers racing losers 409/500 as well as 412). */
const CAS_ATTEMPTS = 40;

const deflateP = promisify(deflate);
const inflateP = promisify(inflate);

interface Table {
  refs: Map<string, string>;
  /** Unquoted ETag of the refs.json read; null when there is none. */
  etag: string | null;
  /** The nonce of the update that wrote it (see updateRefs). */
  txn: string | null;
}


export class S3Remote implements Remote {
  readonly display: string;
  /** Object storage checks nothing: push re-hashes every chunk before it is uploaded. */
  readonly verifiesReceived = false;
  readonly releasesSent = false;
  readonly bucket: string;
  readonly prefix: string;
  private readonly io: S3Bucket;
  private readonly cacheDir: string | undefined;
  /** 'ok': the marker is there; 'empty': no marker and nothing under the prefix (reads see an empty remote). */
  private marker: 'ok' | 'empty' | undefined;
  private indexListed = false;
  private readonly packs = new Set<string>();
  private readonly chunkLocs = new Map<string, Loc>();
  /** Files by content id: manifests, and recipes (those also in `recipeIds`). */
  private readonly fileLocs = new Map<string, Loc>();
  private readonly recipeIds = new Set<string>();
  /** git/ as listed (plus what this instance wrote); undefined until listed. */
  private gitKeys: Set<string> | undefined;

  constructor(url: string, opts: S3Options = {}) {
    this.io = new S3Bucket(url, opts);
    this.bucket = this.io.bucket;
    this.prefix = this.io.prefix;
    this.display = this.io.display;
    this.cacheDir = opts.cacheDir;
  }


  /**
   * The marker says "this prefix is an mstore remote". Reads of a prefix without one see an
   * empty remote if nothing is there; writes create it (If-None-Match: *, so two first pushes
   * agree). A prefix holding anything else is refused either way.
   */
  private async checkMarker(create: boolean): Promise<void> {
    if (this.marker === 'ok' || (this.marker === 'empty' && !create)) return;
    if (await this.readMarker()) {
      this.marker = 'ok';
      return;
    }
    const present = await this.io.list('', 1);
    if (present.length) {
      // A first push of another client may have created the marker since we looked.
      if (await this.readMarker()) {
        this.marker = 'ok';
        return;
      }
      throw new MstoreError('EBADINPUT', `${this.display} holds other objects (e.g. '${present[0].slice(0, 120)}') and no mstore-remote.json: not an mstore remote; use an empty prefix`);
    }
    if (!create) {
      this.marker = 'empty';
      return;
    }
    try {
      await this.io.put('mstore-remote.json', Buffer.from(`${JSON.stringify({ format: S3_FORMAT })}\n`), { ifNoneMatch: true });
    } catch (e) {
      // Another client's first push created it at the same time (412; RGW may say 409 or 500): check theirs.
      const status = failureStatus(e) ?? 0;
      if (!(status === 412 || status === 409 || status >= 500) || !(await this.readMarker())) throw e;
    }
    this.marker = 'ok';
  }

  /** True if the marker is there; throws if it is there but names another format. */
  private async readMarker(): Promise<boolean> {
    const m = await this.io.getBytes('mstore-remote.json', 64 * 1024);
    if (!m) return false;
    let format: unknown;
    try {
      format = (JSON.parse(m.data.toString('utf8')) as { format?: unknown }).format;
    } catch {
      format = undefined;
    }
    if (format !== S3_FORMAT) throw new MstoreError('ECORRUPT', `${this.io.where('mstore-remote.json')}: not an ${S3_FORMAT} marker (format ${(JSON.stringify(format) ?? 'missing').slice(0, 80)})`);
    return true;
  }

  // ---------------------------------------------------------------- refs

  private async readTable(): Promise<Table> {
    const r = await this.io.getBytes('refs.json', MAX_JSON_BYTES);
    if (!r) return { refs: new Map(), etag: null, txn: null };
    const where = this.io.where('refs.json');
    let doc: unknown;
    try {
      doc = JSON.parse(r.data.toString('utf8'));
    } catch {
      throw new MstoreError('ECORRUPT', `${where}: not valid JSON`);
    }
    const refsObj = (doc as { refs?: unknown } | null)?.refs;
    if (typeof refsObj !== 'object' || refsObj === null || Array.isArray(refsObj)) throw new MstoreError('ECORRUPT', `${where}: no "refs" object`);
    const refs = new Map<string, string>();
    for (const [name, value] of Object.entries(refsObj as Record<string, unknown>)) {
      try {
        checkRefName(name);
        checkOid(typeof value === 'string' ? value : String(value), name);
      } catch (e) {
        throw new MstoreError('ECORRUPT', `${where}: ${(e as Error).message}`);
      }
      refs.set(name, value as string);
    }
    const txn = (doc as { txn?: unknown }).txn;
    return { refs, etag: r.etag, txn: typeof txn === 'string' ? txn : null };
  }

  async listRefs(): Promise<Map<string, string>> {
    await this.checkMarker(false);
    if (this.marker === 'empty') return new Map();
    return (await this.readTable()).refs;
  }

  /**
   * All or nothing: one conditional PUT of the whole table. Each attempt re-reads refs.json,
   * checks every update's `old`, and writes with If-Match on the ETag it read (If-None-Match
   * when there was none). RGW answers a racing loser 412, 409 or 500: all mean "re-read".
   * The table carries a nonce of the writing update, so an attempt that succeeded but was
   * answered with an error is recognised on the re-read instead of being taken for a loss.
   */
  async updateRefs(updates: RefUpdate[], _opts: UpdateRefsOptions = {}): Promise<void> {
    const seen = new Set<string>();
    for (const u of updates) {
      checkRefName(u.ref);
      if (u.old !== null) checkOid(u.old, `${u.ref} (old)`);
      if (u.new !== null) checkOid(u.new, `${u.ref} (new)`);
      if (seen.has(u.ref)) throw new MstoreError('EBADINPUT', `${u.ref} appears twice in one ref update`);
      seen.add(u.ref);
    }
    if (!updates.length) return;
    await this.checkMarker(true);
    // A ref never names an object the remote lacks (push sent everything before).
    const news = [...new Set(updates.map((u) => u.new).filter((v): v is string => v !== null))];
    const sizes = await mapLimit(news, SMALL_PARALLEL, async (id) => (this.gitKeys?.has(id) ? 1 : this.io.head(`git/${id}`)));
    const absent = news.filter((_, i) => sizes[i] === undefined);
    if (absent.length) {
      const u = updates.find((x) => x.new === absent[0]);
      throw new MstoreError('EMISSING', `${this.display}: refusing to set ${u?.ref}: git object ${absent[0]} is not there (push its objects first)`);
    }
    const txn = randomBytes(12).toString('hex');
    // RGW compares If-Match with the bare ETag; RFC 7232 servers want it quoted. A 412 while
    // refs.json still has the ETag we sent means the server did not take our form: switch.
    let quoted = false;
    let sent: { etag: string | null; status: number | undefined } | undefined;
    const raced = (status: number | undefined) => status === 412 || status === 409 || (status !== undefined && status >= 500);
    const cas = {
      attempts: CAS_ATTEMPTS,
      // Racing writers back off apart: 20 ms doubled up to 1 s, jittered.
      firstMs: 20,
      maxMs: 1000,
      jitter: true,
      retryable: (e: unknown) => raced(failureStatus(e)),
      exhausted: (e: unknown) => new MstoreError('EREMOTE', `${this.io.where('refs.json')}: no compare-and-swap succeeded in ${CAS_ATTEMPTS} attempts (last answer HTTP ${failureStatus(e)})`),
    };
    await retry(cas, async () => {
      const t = await this.readTable();
      if (t.txn === txn) return; // an earlier attempt of ours landed
      if (sent?.status === 412 && sent.etag !== null && sent.etag === t.etag) quoted = !quoted;
      for (const u of updates) {
        const cur = t.refs.get(u.ref) ?? null;
        if (cur !== u.old) {
          throw nonFastForward(u.ref, `${this.display} has ${cur ? cur.slice(0, 12) : 'no such ref'}, expected ${u.old ? u.old.slice(0, 12) : 'none'} (it moved meanwhile)`);
        }
        if (u.new === null) t.refs.delete(u.ref);
        else t.refs.set(u.ref, u.new);
      }
      if (updates.every((u) => u.old === u.new)) return; // checked, nothing to write
      const refs: Record<string, string> = {};
      for (const name of [...t.refs.keys()].sort()) refs[name] = t.refs.get(name) as string;
      const body = Buffer.from(`${JSON.stringify({ refs, txn }, null, 1)}\n`);
      try {
        await this.io.put('refs.json', body, t.etag ? { ifMatch: quoted ? `"${t.etag}"` : t.etag } : { ifNoneMatch: true });
      } catch (e) {
        sent = { etag: t.etag, status: failureStatus(e) };
        throw e;
      }
    });
  }

  // ---------------------------------------------------------------- what the remote has

  private async cachedIdx(id: string): Promise<Buffer | undefined> {
    if (!this.cacheDir) return undefined;
    return readFile(path.join(this.cacheDir, 's3-index', `${id}.idx`)).catch(() => undefined);
  }

  /** Best effort: a cache that cannot be written only costs a GET next time. */
  private async cacheIdx(id: string, data: Buffer): Promise<void> {
    if (!this.cacheDir) return;
    const dir = path.join(this.cacheDir, 's3-index');
    const tmp = path.join(dir, `.${id}.${randomBytes(4).toString('hex')}.tmp`);
    try {
      await mkdir(dir, { recursive: true });
      await writeFile(tmp, data);
      await rename(tmp, path.join(dir, `${id}.idx`));
    } catch {
      await unlink(tmp).catch(() => undefined);
    }
  }

  /** Verifies an .idx (table hash = pack id, sane entries) and records where each entry lives. */
  private addIdx(id: string, data: Buffer, rel: string): void {
    let entries: ReturnType<typeof readIdx>;
    try {
      entries = readIdx(id, data);
    } catch (e) {
      throw new MstoreError('ECORRUPT', `${this.io.where(rel)}: ${(e as Error).message}`);
    }
    for (const e of entries) {
      (e.kind === 'chunk' ? this.chunkLocs : this.fileLocs).set(e.id, e.loc);
      // The form is the one of the location kept (the last read), whichever pushes stored both.
      if (e.kind === 'recipe') this.recipeIds.add(e.id);
      else if (e.kind === 'file') this.recipeIds.delete(e.id);
    }
    this.packs.add(id);
  }

  /** Lists index/ and reads every .idx not seen yet (cache dir first; they never change). */
  private async refreshIndex(): Promise<void> {
    await this.checkMarker(false);
    this.indexListed = true;
    if (this.marker === 'empty') return;
    const ids: string[] = [];
    for (const k of await this.io.list('index/')) {
      const m = /^index\/([0-9a-f]{64})\.idx$/.exec(k);
      if (m && !this.packs.has(m[1])) ids.push(m[1]);
    }
    await mapLimit(ids, SMALL_PARALLEL, async (id) => {
      const rel = idxKey(id);
      const cached = await this.cachedIdx(id);
      if (cached) {
        try {
          this.addIdx(id, cached, rel);
          return;
        } catch {
          // a damaged cache file: read the remote's
        }
      }
      const r = await this.io.getBytes(rel, MAX_IDX_BYTES);
      if (!r) return; // listed, then gone: nothing deletes .idx, but a hand-edited bucket may
      this.addIdx(id, r.data, rel);
      await this.cacheIdx(id, r.data);
    });
  }

  private async listGit(): Promise<Set<string>> {
    if (!this.gitKeys) {
      await this.checkMarker(false);
      const keys = new Set<string>();
      if (this.marker !== 'empty') {
        for (const k of await this.io.list('git/')) {
          const m = /^git\/([0-9a-f]{40})$/.exec(k);
          if (m) keys.add(m[1]);
        }
      }
      this.gitKeys = keys;
    }
    return this.gitKeys;
  }

  async missing(kind: ObjectKind, ids: string[]): Promise<string[]> {
    for (const id of ids) checkObjectId(kind, id);
    if (kind === 'git') {
      // A few ids (a ref update's targets): HEAD each; many (a first push): one listing.
      if (!this.gitKeys && ids.length <= GIT_HEAD_MAX) {
        await this.checkMarker(false);
        if (this.marker === 'empty') return [...ids];
        const sizes = await mapLimit(ids, SMALL_PARALLEL, (id) => this.io.head(`git/${id}`));
        return ids.filter((_, i) => sizes[i] === undefined);
      }
      const have = await this.listGit();
      return ids.filter((id) => !have.has(id));
    }
    if (!this.indexListed) await this.refreshIndex();
    const locs = kind === 'chunk' ? this.chunkLocs : this.fileLocs;
    return ids.filter((id) => !locs.has(id));
  }

  // ---------------------------------------------------------------- send

  /**
   * Chunks and manifests go into packs of about S3_PACK_BYTES, built in memory from the
   * objects' own buffers (nothing grows with the total). A pack is PUT whole, then its .idx;
   * .idx objects are published strictly in pack order, so a manifest (sent after its chunks)
   * never becomes visible before them. Git objects are written only after all content before
   * them is published, and each only after the objects it points at (those still in flight).
   *
   * A push killed at any moment re-sends at most the pack being uploaded: its entries are not
   * yet in any .idx. Packs fill in a deterministic order, so the rerun rebuilds an uploaded
   * but unindexed pack byte for byte and finds it already there (HEAD), and the pack being
   * filled in memory was never sent.
   */
  async send(objects: AsyncIterable<WireObject>, onBytes?: (n: number) => void): Promise<SendResult> {
    await this.checkMarker(true);
    const result: SendResult = { objects: 0, bytes: 0 };
    const queued = new Set<string>();
    let cur: PackParts | undefined;
    // Two buffers, reused: one uploading while the other fills. Memory stays at about
    // 2 x PACK_BUFFER_BYTES whatever the total, and no per-pack garbage waits for the GC.
    const pool: Buffer[] = [];
    const release = (b: Buffer) => {
      if (b.length === PACK_BUFFER_BYTES && pool.length < 2) pool.push(b);
    };
    /** An upload that failed: stop. A failing source (sourceError) still gets what it gave published. */
    let failure: unknown;
    let sourceError: unknown;
    const note = (p: Promise<unknown>) => p.catch((e) => (failure ??= e));
    let published: Promise<void> = Promise.resolve();
    const gitWrites = new Map<string, Promise<void>>();
    const gitWindow: Promise<void>[] = [];
    const gitHave = this.gitKeys;

    // One pack uploads (then its .idx) while the next fills: .idx objects land in pack order.
    const seal = async () => {
      const p = cur;
      cur = undefined;
      if (!p) return;
      await published.catch(() => undefined);
      if (failure) return;
      published = this.uploadPack(p).finally(() => release(p.buf)).then(async (built) => {
        await this.io.put(built.idxRel, built.idx);
        this.addIdx(built.id, built.idx, built.idxRel);
        await this.cacheIdx(built.id, built.idx);
        // A pack a killed run had uploaded whole (but not indexed) costs nothing now.
        if (built.uploaded) {
          result.objects += p.entries.length;
          result.bytes += p.bytes;
          onBytes?.(p.bytes);
        }
      });
      note(published);
    };
    const flushContent = async () => {
      await seal();
      await published.catch(() => undefined);
    };

    try {
      for await (const o of objects) {
        if (failure) break;
        if (o.kind === 'git') {
          checkObject(o);
          if (gitHave?.has(o.id) || gitWrites.has(o.id)) continue;
          await flushContent();
          if (failure) break;
          let links;
          try {
            links = framedObjectLinks(o.data);
          } catch (e) {
            throw new MstoreError('ECORRUPT', `git object ${o.id}: ${(e as Error).message}`);
          }
          const deps = links.map((l) => gitWrites.get(l.oid)).filter((p): p is Promise<void> => p !== undefined);
          const w = Promise.all(deps).then(async () => {
            await this.io.put(`git/${o.id}`, await deflateP(o.data));
            this.gitKeys?.add(o.id);
            result.objects++;
            result.bytes += o.data.length;
            onBytes?.(o.data.length);
          });
          note(w);
          gitWrites.set(o.id, w);
          gitWindow.push(w);
          if (gitWindow.length >= SMALL_PARALLEL) await gitWindow.shift()?.catch(() => undefined);
          continue;
        }
        if (o.kind !== 'chunk') checkObject(o); // chunks were re-hashed by the sender as it read them
        // A file's content is held once, as a manifest or as a recipe (its key is the content id either way).
        const qk = `${o.kind === 'chunk' ? 'chunk' : 'file'}:${o.id}`;
        if (queued.has(qk) || (o.kind === 'chunk' ? this.chunkLocs : this.fileLocs).has(o.id)) continue;
        if (o.data.length > (o.kind === 'chunk' ? MAX_OBJECT_BYTES : MAX_MANIFEST_BYTES)) {
          throw new MstoreError('EBADINPUT', `${o.kind} ${o.id}: ${o.data.length} bytes is over the limit`);
        }
        queued.add(qk);
        if (cur && cur.used + o.data.length > cur.buf.length) await seal();
        if (!cur) {
          const need = packBytesFor(o.data.length);
          cur = startPack(need <= PACK_BUFFER_BYTES ? (pool.pop() ?? Buffer.allocUnsafe(PACK_BUFFER_BYTES)) : Buffer.allocUnsafe(need));
        }
        if (addEntry(cur, o.kind, o.id, o.data)) await seal();
      }
    } catch (e) {
      sourceError = e;
    }
    // What the source gave before it failed is complete: publish it, a rerun skips it.
    await flushContent();
    await Promise.allSettled(gitWrites.values());
    if (failure ?? sourceError) throw failure ?? sourceError;
    return result;
  }

  /** Seals a pack in memory (table, footer), PUTs it unless an identical one is there, and returns its .idx. */
  private async uploadPack(p: PackParts): Promise<{ id: string; idx: Buffer; idxRel: string; uploaded: boolean }> {
    const { id, idx, size, bytes } = sealPack(p);
    const rel = packKey(id);
    // A rerun after a kill rebuilds the same pack: if it is already there, whole, skip the upload.
    const uploaded = (await this.io.head(rel)) !== size;
    if (uploaded) await this.io.put(rel, bytes());
    return { id, idx, idxRel: idxKey(id), uploaded };
  }

  // ---------------------------------------------------------------- fetch

  async *fetch(kind: ObjectKind, ids: string[]): AsyncIterable<WireObject> {
    for (const id of ids) checkObjectId(kind, id);
    const unique = [...new Set(ids)];
    if (kind === 'git') yield* this.fetchGit(unique);
    else if (kind === 'recipe') throw new MstoreError('EBADINPUT', 'recipes are fetched as files');
    else yield* this.fetchPacked(kind, unique);
  }

  private async fetchOneGit(id: string, signal: AbortSignal): Promise<WireObject> {
    const rel = `git/${id}`;
    const r = await this.io.getBytes(rel, MAX_GIT_BYTES, undefined, signal);
    if (!r) throw new MstoreError('EMISSING', `${this.io.where(rel)} does not exist (the remote lacks git object ${id})`);
    let data: Buffer;
    try {
      data = await inflateP(r.data, { maxOutputLength: MAX_GIT_BYTES });
    } catch (e) {
      throw new MstoreError('ECORRUPT', `${this.io.where(rel)}: not a zlib-deflated git object (${(e as Error).message.split('\n')[0]})`);
    }
    const o: WireObject = { kind: 'git', id, data };
    try {
      checkObject(o);
    } catch (e) {
      throw new MstoreError('ECORRUPT', `${this.io.where(rel)}: ${(e as Error).message}`);
    }
    return o;
  }


  private async *fetchGit(ids: string[]): AsyncGenerator<WireObject> {
    await this.checkMarker(false);
    yield* slidingWindow(
      SMALL_PARALLEL,
      ids.map((id) => (signal: AbortSignal) => this.fetchOneGit(id, signal)),
    );
  }

  /** Chunks, or files: a file's manifest, or its recipe (`recipe` objects) for content the remote holds as one. */
  private async *fetchPacked(kind: 'chunk' | 'file', ids: string[]): AsyncGenerator<WireObject> {
    if (!ids.length) return;
    const locs = kind === 'chunk' ? this.chunkLocs : this.fileLocs;
    if (!this.indexListed || ids.some((id) => !locs.has(id))) await this.refreshIndex();
    const lacking = ids.find((id) => !locs.has(id));
    if (lacking) throw new MstoreError('EMISSING', `${this.display} has no ${kind === 'chunk' ? 'chunk' : 'file manifest'} ${lacking} (no index/*.idx lists it)`);

    // Group by pack, sort by offset, coalesce close neighbours into one Range GET.
    const byPack = new Map<string, { id: string; loc: Loc }[]>();
    for (const id of ids) {
      const loc = locs.get(id) as Loc;
      let l = byPack.get(loc.pack);
      if (!l) byPack.set(loc.pack, (l = []));
      l.push({ id, loc });
    }
    const ranges: { pack: string; offset: number; length: number; items: { id: string; loc: Loc }[] }[] = [];
    for (const [pack, items] of byPack) {
      items.sort((a, b) => a.loc.offset - b.loc.offset);
      let r: (typeof ranges)[number] | undefined;
      for (const it of items) {
        const end = it.loc.offset + it.loc.length;
        if (r && it.loc.offset - (r.offset + r.length) <= RANGE_GAP_BYTES && end - r.offset <= RANGE_MAX_BYTES && it.loc.offset >= r.offset + r.length) {
          r.length = end - r.offset;
          r.items.push(it);
        } else {
          r = { pack, offset: it.loc.offset, length: it.loc.length, items: [it] };
          ranges.push(r);
        }
      }
    }
    const jobs = ranges.map((r) => async (signal: AbortSignal): Promise<WireObject[]> => {
      const rel = packKey(r.pack);
      const got = await this.io.getBytes(rel, r.length, { offset: r.offset, length: r.length }, signal);
      if (!got) throw new MstoreError('EMISSING', `${this.io.where(rel)} does not exist (index/${r.pack}.idx lists it)`);
      if (got.data.length !== r.length) throw new MstoreError('ECORRUPT', `${this.io.where(rel)}: ${got.data.length} bytes at offset ${r.offset}, expected ${r.length} (truncated pack)`);
      return r.items.map((it) => {
        const o: WireObject = { kind: kind === 'file' && this.recipeIds.has(it.id) ? 'recipe' : kind, id: it.id, data: got.data.subarray(it.loc.offset - r.offset, it.loc.offset - r.offset + it.loc.length) };
        try {
          checkObject(o);
        } catch (e) {
          throw new MstoreError('ECORRUPT', `${this.io.where(rel)}: ${(e as Error).message}`);
        }
        return o;
      });
    });
    for await (const batch of slidingWindow(RANGE_PARALLEL, jobs)) yield* batch;
  }

  async close(): Promise<void> {
    await this.io.close();
  }
}

export function openS3Remote(url: string, opts: S3Options = {}): S3Remote {
  return new S3Remote(url, opts);
}
