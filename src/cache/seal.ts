import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { constants, type FileHandle, open } from 'node:fs/promises';
import { writeFileAtomic } from './files.js';

// Encryption at rest: AES-256-GCM with a key file of mode 0600. The hub seals
// fed Secrets in its store with it, the agent its cache.
//
// Sealed bytes: version (1) | key id (4) | nonce (12) | ciphertext | tag (16).
// The key id (a hash of the key) tells "sealed with another key" apart from
// "changed on disk"; version and key id are authenticated with the caller's
// associated data (e.g. the object's key, so a sealed value cannot be moved
// to another object unnoticed). Nonces are random: 2^32 seals per key keep
// the collision risk negligible (NIST SP 800-38D).

export const sealKeyBytes = 32;
const version = 1;
const keyIdBytes = 4;
const nonceBytes = 12;
const tagBytes = 16;
const headerBytes = 1 + keyIdBytes;

/** Equal to the ErrorCode values in src/tunnel (cache does not import tunnel). */
export type SealErrorCode =
  | 'HAWSER_SEAL_KEY_MISMATCH'
  | 'HAWSER_SEAL_TAMPERED'
  | 'HAWSER_SEAL_UNSUPPORTED'
  | 'HAWSER_SECRET_KEY_FILE_INSECURE'
  | 'HAWSER_SECRET_KEY_FILE_INVALID';

export class SealError extends Error {
  override readonly name = 'SealError';
  constructor(
    readonly code: SealErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A loaded key. Never logged: its id is the only thing about it that may be shown. */
export class SealKey {
  readonly id: Buffer;
  private constructor(private readonly bytes: Buffer) {
    this.id = createHash('sha256').update('hawser seal key id\0').update(bytes).digest().subarray(0, keyIdBytes);
  }

  static fromBytes(bytes: Uint8Array): SealKey {
    if (bytes.length !== sealKeyBytes) {
      throw new SealError('HAWSER_SECRET_KEY_FILE_INVALID', `a seal key is ${sealKeyBytes} bytes, not ${bytes.length}`);
    }
    return new SealKey(Buffer.from(bytes));
  }

  static generate(): SealKey {
    return new SealKey(randomBytes(sealKeyBytes));
  }

  /** Hex of the key id, for logs. */
  get idHex(): string {
    return this.id.toString('hex');
  }

  seal(plaintext: Uint8Array, associatedData: Uint8Array = Buffer.alloc(0)): Buffer {
    const header = Buffer.concat([Buffer.from([version]), this.id]);
    const nonce = randomBytes(nonceBytes);
    const cipher = createCipheriv('aes-256-gcm', this.bytes, nonce, { authTagLength: tagBytes });
    cipher.setAAD(Buffer.concat([header, associatedData]));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([header, nonce, body, cipher.getAuthTag()]);
  }

  open(sealed: Uint8Array, associatedData: Uint8Array = Buffer.alloc(0)): Buffer {
    const bytes = Buffer.from(sealed);
    if (bytes.length < headerBytes + nonceBytes + tagBytes) {
      throw new SealError('HAWSER_SEAL_TAMPERED', `sealed value of ${bytes.length} bytes is shorter than its header, nonce and tag`);
    }
    if (bytes[0] !== version) throw new SealError('HAWSER_SEAL_UNSUPPORTED', `sealed value has format version ${bytes[0]}; this build reads ${version}`);
    const keyId = bytes.subarray(1, headerBytes);
    if (!keyId.equals(this.id)) {
      throw new SealError('HAWSER_SEAL_KEY_MISMATCH', `sealed with key ${keyId.toString('hex')}, but the loaded key is ${this.idHex}: restore the key file it was sealed with`);
    }
    const nonce = bytes.subarray(headerBytes, headerBytes + nonceBytes);
    const body = bytes.subarray(headerBytes + nonceBytes, bytes.length - tagBytes);
    const decipher = createDecipheriv('aes-256-gcm', this.bytes, nonce, { authTagLength: tagBytes });
    decipher.setAAD(Buffer.concat([bytes.subarray(0, headerBytes), associatedData]));
    decipher.setAuthTag(bytes.subarray(bytes.length - tagBytes));
    try {
      return Buffer.concat([decipher.update(body), decipher.final()]);
    } catch (cause) {
      throw new SealError('HAWSER_SEAL_TAMPERED', 'sealed value fails authentication (its bytes changed, or it belongs to another object)', { cause });
    }
  }
}

/**
 * Reads a key file: a regular file of exactly 32 bytes that only its owner
 * may read or write (no group or other bits). Anything else is refused.
 * Undefined when it does not exist.
 */
export async function loadSealKey(path: string): Promise<SealKey | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw new SealError('HAWSER_SECRET_KEY_FILE_INVALID', `secret key file ${path} is a symbolic link: refused`);
    throw err;
  }
  try {
    const s = await handle.stat();
    if (!s.isFile()) throw new SealError('HAWSER_SECRET_KEY_FILE_INVALID', `secret key file ${path} is not a regular file`);
    if ((s.mode & 0o077) !== 0) {
      throw new SealError(
        'HAWSER_SECRET_KEY_FILE_INSECURE',
        `secret key file ${path} has mode ${(s.mode & 0o777).toString(8).padStart(4, '0')}: others may read it; chmod 600 it (and consider the key exposed)`,
      );
    }
    if (s.size !== sealKeyBytes) {
      throw new SealError('HAWSER_SECRET_KEY_FILE_INVALID', `secret key file ${path} holds ${s.size} bytes; a key is ${sealKeyBytes} bytes`);
    }
    const bytes = Buffer.alloc(sealKeyBytes);
    const { bytesRead } = await handle.read(bytes, 0, sealKeyBytes, 0);
    if (bytesRead !== sealKeyBytes) throw new SealError('HAWSER_SECRET_KEY_FILE_INVALID', `secret key file ${path}: read ${bytesRead} of ${sealKeyBytes} bytes`);
    return SealKey.fromBytes(bytes);
  } finally {
    await handle.close();
  }
}

/**
 * Loads the key file, or creates one (random, mode 0600, written atomically)
 * when it does not exist and `mayCreate` allows: a caller holding data
 * sealed with a lost key must not silently get a new one.
 */
export async function loadOrCreateSealKey(path: string, mayCreate: () => Promise<boolean> | boolean = () => true): Promise<{ key: SealKey; created: boolean }> {
  const existing = await loadSealKey(path);
  if (existing) return { key: existing, created: false };
  if (!(await mayCreate())) {
    throw new SealError('HAWSER_SECRET_KEY_FILE_INVALID', `secret key file ${path} is missing, but data sealed with a key exists: restore the key file from a backup`);
  }
  await writeFileAtomic(path, randomBytes(sealKeyBytes), { mode: 0o600 });
  const loaded = await loadSealKey(path);
  if (!loaded) throw new SealError('HAWSER_SECRET_KEY_FILE_INVALID', `secret key file ${path} vanished right after it was created`);
  return { key: loaded, created: true };
}
