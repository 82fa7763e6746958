import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../cache/index.js';
import { ErrorCode, HawserError, validateTrustBundle } from '../tunnel/index.js';

// The CA bundle the hub pushed, in its own checksummed file beside
// identity.json, written atomically. Every dial trusts it together with
// --parent-ca-file, so an agent offline through a CA rotation still verifies
// the hub's new serving certificate. Adopted only once durable.

export interface StoredTrustBundle {
  version: number;
  caPems: string[];
}

interface TrustFile {
  version: 1;
  bundle: StoredTrustBundle;
  /** sha256 of the canonical JSON of `bundle`. */
  sha256: string;
}

export const trustBundleFileName = 'trust-bundle.json';

function digest(bundle: StoredTrustBundle): string {
  return createHash('sha256').update(JSON.stringify({ version: bundle.version, caPems: bundle.caPems })).digest('hex');
}

export type TrustLoad = { kind: 'ok'; bundle: StoredTrustBundle } | { kind: 'missing' } | { kind: 'damaged'; reason: string };

export class TrustStore {
  readonly path: string;

  constructor(readonly cacheDir: string) {
    this.path = join(cacheDir, trustBundleFileName);
  }

  /** A damaged file is reported, never trusted: the agent falls back to --parent-ca-file. */
  async load(): Promise<TrustLoad> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
      return { kind: 'damaged', reason: `cannot read: ${(err as Error).message}` };
    }
    let file: TrustFile;
    try {
      file = JSON.parse(text) as TrustFile;
    } catch {
      return { kind: 'damaged', reason: 'not JSON' };
    }
    const b = file?.bundle;
    if (file?.version !== 1 || typeof b?.version !== 'number' || !Array.isArray(b.caPems) || !b.caPems.every((p) => typeof p === 'string')) {
      return { kind: 'damaged', reason: 'missing fields' };
    }
    if (digest(b) !== file.sha256) return { kind: 'damaged', reason: 'checksum mismatch' };
    try {
      validateTrustBundle(b.caPems);
    } catch (err) {
      return { kind: 'damaged', reason: (err as Error).message };
    }
    return { kind: 'ok', bundle: { version: b.version, caPems: b.caPems } };
  }

  /** Durable when it resolves; a failed write throws HAWSER_CACHE_WRITE_FAILED. */
  async save(bundle: StoredTrustBundle): Promise<void> {
    const file: TrustFile = { version: 1, bundle, sha256: digest(bundle) };
    try {
      await writeFileAtomic(this.path, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
    } catch (err) {
      throw new HawserError(ErrorCode.CacheWriteFailed, `cannot write the trust bundle to ${this.path}: ${(err as Error).message}`, { cause: err });
    }
  }
}
