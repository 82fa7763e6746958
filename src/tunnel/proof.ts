import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, randomBytes, sign, verify } from 'node:crypto';
import type { Hello, HelloProof } from '../gen/hawser/v1/tunnel.js';

// Proof of possession for a hello. The agent's Ed25519 key is the cluster's
// identity; every hello carries a signature over a domain-separated message,
// so a signature made for one purpose, cluster, key or secret is worthless
// for any other, and a timestamp plus a nonce make it single-use (the hub
// checks the window and remembers nonces for as long as the window lasts).
// Chosen over a challenge round trip: the hello stays the only frame before
// the welcome, which matters on links where each round trip costs seconds.

const domain = 'hawser.io/hello-proof/v1';

export type ProofPurpose = 'register' | 'connect';

export interface AgentKeyPair {
  /** PKCS#8 DER of the private key. */
  privateKeyDer: Uint8Array;
  /** SPKI DER of the public key: what the hub binds to the cluster id. */
  publicKeyDer: Uint8Array;
}

export function generateAgentKeyPair(): AgentKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyDer: new Uint8Array(privateKey.export({ format: 'der', type: 'pkcs8' })),
    publicKeyDer: new Uint8Array(publicKey.export({ format: 'der', type: 'spki' })),
  };
}

/** `SHA256:<base64>` of the SPKI DER, as ssh prints key fingerprints. */
export function publicKeyFingerprint(publicKeyDer: Uint8Array): string {
  return `SHA256:${createHash('sha256').update(publicKeyDer).digest('base64').replace(/=+$/, '')}`;
}

function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** What hello and purpose the proof is made for: the secret presented is bound too. */
export interface ProofSubject {
  purpose: ProofPurpose;
  clusterId: string;
  clusterName: string;
  publicKeyDer: Uint8Array;
  /** The bootstrap token or credential the hello presents. */
  secret: string;
}

export function proofMessage(subject: ProofSubject, signedAtUnixMs: number, nonce: Uint8Array): Buffer {
  return Buffer.from(
    [
      domain,
      subject.purpose,
      subject.clusterId,
      subject.clusterName,
      sha256Hex(subject.publicKeyDer),
      sha256Hex(subject.secret),
      String(signedAtUnixMs),
      Buffer.from(nonce).toString('hex'),
    ].join('\n'),
    'utf8',
  );
}

/** Parsed signing keys by their PKCS#8 DER (base64); bounded, oldest out first. */
const signingKeys = new Map<string, KeyObject>();
/** One process runs one agent, or a bench swarm of a thousand. */
const maxSigningKeys = 1024;

/**
 * The private key as a KeyObject, parsed once per key: OpenSSL 3 sets up a
 * decoder for each parse (~0.7 ms of CPU, 14× the Ed25519 signature itself),
 * and every hello (each registration, each reconnect) signs.
 */
export function agentSigningKey(privateKeyDer: Uint8Array): KeyObject {
  const id = Buffer.from(privateKeyDer).toString('base64');
  let key = signingKeys.get(id);
  if (key) return key;
  key = createPrivateKey({ key: Buffer.from(privateKeyDer), format: 'der', type: 'pkcs8' });
  if (signingKeys.size >= maxSigningKeys) signingKeys.delete(signingKeys.keys().next().value as string);
  signingKeys.set(id, key);
  return key;
}

export function signProof(subject: ProofSubject, privateKeyDer: Uint8Array, nowMs: number): HelloProof {
  const nonce = randomBytes(16);
  const key = agentSigningKey(privateKeyDer);
  const signature = sign(null, proofMessage(subject, nowMs, nonce), key);
  return { signedAtUnixMs: nowMs, nonce, signature };
}

/** True when `proof` is a valid Ed25519 signature by publicKeyDer over the subject. Never throws. */
export function proofSignatureValid(subject: ProofSubject, proof: HelloProof): boolean {
  try {
    const key = createPublicKey({ key: Buffer.from(subject.publicKeyDer), format: 'der', type: 'spki' });
    if (key.asymmetricKeyType !== 'ed25519') return false;
    return verify(null, proofMessage(subject, proof.signedAtUnixMs, proof.nonce), key, Buffer.from(proof.signature));
  } catch {
    return false;
  }
}

/** The subject a hello claims: purpose from its auth case. Undefined when it has no auth. */
export function helloProofSubject(hello: Hello): ProofSubject | undefined {
  if (!hello.auth) return undefined;
  return {
    purpose: hello.auth.$case === 'bootstrapToken' ? 'register' : 'connect',
    clusterId: hello.clusterId,
    clusterName: hello.registration?.name ?? '',
    publicKeyDer: new Uint8Array(hello.publicKey),
    secret: hello.auth.value,
  };
}

/**
 * Signs a hello as its agent: sets its public key and a fresh proof over the
 * subject the hub will derive from the same hello (helloProofSubject), so
 * signer and verifier can never disagree on what was signed.
 */
export function signHello(hello: Hello, key: AgentKeyPair, nowMs: number): Hello {
  const signed: Hello = { ...hello, publicKey: Buffer.from(key.publicKeyDer) };
  const subject = helloProofSubject(signed);
  if (subject) signed.proof = signProof(subject, key.privateKeyDer, nowMs);
  return signed;
}
