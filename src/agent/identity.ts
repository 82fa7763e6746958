import { randomUUID } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { OfflineCache, writeFileAtomic } from '../cache/index.js';
import { ErrorCode, generateAgentKeyPair, HawserError } from '../tunnel/index.js';
import { readRecordFile, type RecordRead, recordFileText, writeRecordFile } from './record-file.js';

// Who this agent is: cluster id, key, credential, cluster name and namespace,
// as ONE record with a checksum over the whole, in its own file beside the
// LevelDB cache (so LevelDB's recovery can never drop it silently). Written
// atomically (temp file, fsync, rename), 0600, then copied to a backup the
// same way; nothing is adopted before it is durable.

export interface AgentIdentity {
  clusterId: string;
  /** Ed25519 private key, PKCS#8 DER, base64. The cluster's identity: never leaves this file. */
  privateKey: string;
  /** Ed25519 public key, SPKI DER, base64: sent in every hello. */
  publicKey: string;
  /** Present once the hub has approved the cluster. */
  credential?: string;
  credentialExpiresAtMs?: number;
  clusterName?: string;
  dedicatedNamespace?: string;
}

export const identityFileName = 'identity.json';
const backupSuffix = '.bak';
/** Where identity lived before it had its own file: a key in the LevelDB cache. */
const legacyCacheKey = 'identity';

export function newIdentity(clusterId: string = randomUUID()): AgentIdentity {
  const keys = generateAgentKeyPair();
  return {
    clusterId,
    privateKey: Buffer.from(keys.privateKeyDer).toString('base64'),
    publicKey: Buffer.from(keys.publicKeyDer).toString('base64'),
  };
}

function readIdentityFile(path: string): Promise<RecordRead<AgentIdentity>> {
  return readRecordFile<AgentIdentity>(path, 'identity', (id) => typeof id?.clusterId === 'string' && typeof id.privateKey === 'string' && typeof id.publicKey === 'string');
}

export type IdentitySource = 'file' | 'backup' | 'migrated' | 'quarantine' | 'created';

/** The identity file of one cache directory. */
export class IdentityStore {
  readonly path: string;

  constructor(readonly cacheDir: string) {
    this.path = join(cacheDir, identityFileName);
  }

  /** Durable when it resolves; a failed write throws HAWSER_CACHE_WRITE_FAILED and changes nothing adopted. */
  async save(identity: AgentIdentity): Promise<void> {
    const text = recordFileText('identity', identity);
    await writeRecordFile(this.path, text, 'the agent identity');
    // The backup only ever lags: it holds the same cluster id and key, and a credential at most one renewal old.
    await writeFileAtomic(this.path + backupSuffix, text, { mode: 0o600 }).catch(() => undefined);
  }

  /**
   * An identity a quarantined LevelDB still holds (caches from before the
   * identity file kept it there under the legacy key), newest quarantine first.
   */
  private async fromQuarantine(): Promise<Partial<AgentIdentity> & { clusterId: string } | undefined> {
    const names = (await readdir(this.cacheDir).catch(() => [] as string[])).filter((n) => /\.quarantine-/.test(n)).sort().reverse();
    for (const name of names) {
      const old = await OfflineCache.salvage<Partial<AgentIdentity>>(join(this.cacheDir, name), legacyCacheKey);
      if (old?.clusterId) return { ...old, clusterId: old.clusterId };
    }
    return undefined;
  }

  /**
   * The stored identity; a damaged file is recovered from its backup, a
   * missing one migrated once from the legacy cache key, and failing all of
   * that, a new identity (new cluster id, new key) is created and stored.
   */
  async loadOrCreate(legacy: OfflineCache | undefined): Promise<{ identity: AgentIdentity; source: IdentitySource; damaged?: string }> {
    const main = await readIdentityFile(this.path);
    if (main.kind === 'ok') return { identity: main.record, source: 'file' };
    const backup = await readIdentityFile(this.path + backupSuffix);
    if (backup.kind === 'ok') {
      await this.save(backup.record);
      return { identity: backup.record, source: 'backup', ...(main.kind === 'damaged' ? { damaged: main.reason } : {}) };
    }
    const salvaged = await this.fromQuarantine();
    if (salvaged) {
      const identity = { ...newIdentity(salvaged.clusterId), ...salvaged };
      await this.save(identity);
      return { identity, source: 'quarantine', ...(main.kind === 'damaged' ? { damaged: main.reason } : {}) };
    }
    if (main.kind === 'damaged') {
      throw new HawserError(
        ErrorCode.IdentityCorrupt,
        `agent identity ${this.path} is damaged (${main.reason}) and no backup holds it. ` +
          `The cluster's key is lost: on the hub run "hawser delete cluster NAME", then move ${this.path} aside and start the agent again to register afresh`,
      );
    }
    const old = legacy ? await legacy.get<{ clusterId?: string; credential?: string; clusterName?: string; dedicatedNamespace?: string }>(legacyCacheKey).catch(() => undefined) : undefined;
    if (old?.clusterId) {
      // Agents from before the key existed: same cluster id, a new key that the
      // hub binds at the first hello its credential vouches for.
      const identity: AgentIdentity = {
        ...newIdentity(old.clusterId),
        ...(old.credential ? { credential: old.credential } : {}),
        ...(old.clusterName ? { clusterName: old.clusterName } : {}),
        ...(old.dedicatedNamespace ? { dedicatedNamespace: old.dedicatedNamespace } : {}),
      };
      await this.save(identity);
      await legacy!.delete(legacyCacheKey);
      return { identity, source: 'migrated' };
    }
    const identity = newIdentity();
    await this.save(identity);
    return { identity, source: 'created' };
  }
}
