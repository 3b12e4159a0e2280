/** User tags: annotated git tags beside the version tags, never named like one. */
import os from 'node:os';
import { MstoreError } from '../lib/errors.js';
import type { Store } from '../repo/store.js';
import { checkTagName, refCollision, resolveRev, readMeta, readRecord } from '../repo/versions.js';
import { defaultAuthor } from '../repo/version-write.js';
import { now as clockNow } from '../lib/clock.js';
import { moveRefs } from '../repo/reflog.js';

export interface TagInfo {
  name: string;
  commit: string;
  /** The version the tag points at, if it is one. */
  version: string | undefined;
  /** True for vNNN / line/vNNN tags that commit created. */
  isVersion: boolean;
  message: string | undefined;
}

export async function createTag(store: Store, name: string, rev = 'latest', message?: string): Promise<TagInfo> {
  checkTagName(name);
  return store.withLock('tag', async () => {
    const repo = store.repo;
    if (await repo.readRef(`refs/tags/${name}`)) throw new MstoreError('EEXISTS', `tag '${name}' already exists`);
    const clash = await refCollision(repo, `refs/tags/${name}`);
    if (clash) throw new MstoreError('EBADNAME', `tag '${name}' collides with the existing ref ${clash}`);
    const commit = await resolveRev(repo, rev);
    const meta = await readMeta(repo, commit);
    const author = defaultAuthor();
    const now = clockNow();
    const msg = message ?? `${name} -> ${meta?.version ?? commit.slice(0, 12)} (tagged on ${os.hostname()})`;
    const tagId = await repo.writeAnnotatedTag({
      name,
      object: commit,
      message: `${msg}\n`,
      tagger: { ...author, timestamp: Math.floor(now.getTime() / 1000), timezoneOffset: now.getTimezoneOffset() },
    });
    await moveRefs(store, [{ ref: `refs/tags/${name}`, value: tagId, create: true }], 'tag', { message: msg });
    return { name, commit, version: meta?.version, isVersion: false, message: msg };
  });
}

export async function deleteTag(store: Store, name: string): Promise<void> {
  if (/(^|\/)v[0-9]+$/.test(name)) {
    throw new MstoreError('EBADNAME', `'${name}' is a version, not a tag: remove it with 'mstore rm ${name}' (it makes a verified backup first)`);
  }
  checkTagName(name);
  await store.withLock('tag', async () => {
    if (!(await store.repo.readRef(`refs/tags/${name}`))) throw new MstoreError('ENOTFOUND', `tag '${name}' not found`, { what: name });
    await moveRefs(store, [{ ref: `refs/tags/${name}`, value: null }], 'delete');
  });
}

export async function listTags(store: Store): Promise<TagInfo[]> {
  const repo = store.repo;
  const out: TagInfo[] = [];
  for (const { name, oid, commit } of await repo.peeledTags()) {
    const { meta } = await readRecord(repo, commit);
    const tag = await repo.readTagMessage(oid);
    out.push({ name, commit, version: meta?.version, isVersion: meta?.version === name, message: tag?.message.trim() });
  }
  return out;
}
