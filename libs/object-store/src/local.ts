import { createReadStream } from 'node:fs';
import { link, mkdir, readdir, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ObjectExistsError, type ObjectStore, type PutOptions } from './types.js';

export interface LocalObjectStoreOptions {
  /** The directory objects live under; created when missing. */
  root: string;
}

/**
 * Objects as files under one directory, for a laptop and for tests. Writes are atomic (a temporary
 * file renamed or hard-linked into place), and `ifAbsent` is exact: link() fails when the name exists.
 */
export function createLocalObjectStore(o: LocalObjectStoreOptions): ObjectStore {
  const root = resolve(o.root);
  const pathOf = (name: string) => {
    const p = resolve(root, name);
    if (p !== root && !p.startsWith(root + sep)) throw new Error(`object name ${name} leaves the store's directory`);
    return p;
  };
  const walk = async (dir: string): Promise<string[]> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: string[] = [];
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory()) out.push(...(await walk(p)));
      else if (!e.name.startsWith('.tmp-')) out.push(relative(root, p).split(sep).join('/'));
    }
    return out;
  };
  return {
    uri: (name) => pathToFileURL(pathOf(name)).href,
    async put(name: string, body: Buffer | string, options: PutOptions = {}) {
      const path = pathOf(name);
      await mkdir(dirname(path), { recursive: true });
      const tmp = join(dirname(path), `.tmp-${randomBytes(6).toString('hex')}`);
      await writeFile(tmp, body);
      try {
        if (options.ifAbsent) {
          await link(tmp, path).catch((err: NodeJS.ErrnoException) => {
            throw err.code === 'EEXIST' ? new ObjectExistsError(name) : err;
          });
        } else {
          await rename(tmp, path);
        }
      } finally {
        await unlink(tmp).catch(() => undefined);
      }
    },
    async get(name) {
      try {
        return await readFile(pathOf(name));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw err;
      }
    },
    async list(prefix) {
      // Walk the deepest directory the prefix names, then filter by the whole prefix.
      const dir = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
      return (await walk(pathOf(dir))).filter((n) => n.startsWith(prefix)).sort();
    },
    async delete(name) {
      await rm(pathOf(name), { force: true });
    },
    read: (name) => createReadStream(pathOf(name)),
    signedUrl: async () => undefined,
  };
}
