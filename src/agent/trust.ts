import { join } from 'node:path';
import { validateTrustBundle } from '../tunnel/index.js';
import { readRecordFile, recordFileText, writeRecordFile } from './record-file.js';

// The CA bundle the hub pushed, in its own checksummed file beside
// identity.json, written atomically. Every dial trusts it together with
// --parent-ca-file, so an agent offline through a CA rotation still verifies
// the hub's new serving certificate. Adopted only once durable.

export interface StoredTrustBundle {
  version: number;
  caPems: string[];
}

export const trustBundleFileName = 'trust-bundle.json';

export type TrustLoad = { kind: 'ok'; bundle: StoredTrustBundle } | { kind: 'missing' } | { kind: 'damaged'; reason: string };

export class TrustStore {
  readonly path: string;

  constructor(readonly cacheDir: string) {
    this.path = join(cacheDir, trustBundleFileName);
  }

  /** A damaged file is reported, never trusted: the agent falls back to --parent-ca-file. */
  async load(): Promise<TrustLoad> {
    const read = await readRecordFile<StoredTrustBundle>(
      this.path,
      'bundle',
      (b) => typeof b?.version === 'number' && Array.isArray(b.caPems) && b.caPems.every((p) => typeof p === 'string'),
    );
    if (read.kind !== 'ok') return read;
    try {
      validateTrustBundle(read.record.caPems);
    } catch (err) {
      return { kind: 'damaged', reason: (err as Error).message };
    }
    return { kind: 'ok', bundle: { version: read.record.version, caPems: read.record.caPems } };
  }

  /** Durable when it resolves; a failed write throws HAWSER_CACHE_WRITE_FAILED. */
  async save(bundle: StoredTrustBundle): Promise<void> {
    await writeRecordFile(this.path, recordFileText('bundle', { version: bundle.version, caPems: bundle.caPems }), 'the trust bundle');
  }
}
