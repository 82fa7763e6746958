import { X509Certificate } from 'node:crypto';
import { ErrorCode, HawserError } from './errors.js';

// What hub and agent agree a trust bundle is: a short list of PEM CA
// certificates. The agent refuses anything else and keeps the trust it had.

export interface TrustBundleLimits {
  maxCertificates: number;
  /** Bytes of one PEM. */
  maxPemBytes: number;
}

export const defaultTrustBundleLimits: TrustBundleLimits = { maxCertificates: 16, maxPemBytes: 16 * 1024 };

export interface CertificateSummary {
  /** SHA-256 of the DER, colon-separated hex (as openssl prints it). */
  fingerprint: string;
  subject: string;
  issuer: string;
  notBefore: string;
  notAfter: string;
  notBeforeMs: number;
  notAfterMs: number;
  isCa: boolean;
}

export function summarizeCertificate(pem: string | X509Certificate): CertificateSummary {
  const cert = typeof pem === 'string' ? new X509Certificate(pem) : pem;
  const notBeforeMs = Date.parse(cert.validFrom);
  const notAfterMs = Date.parse(cert.validTo);
  return {
    fingerprint: cert.fingerprint256,
    subject: cert.subject,
    issuer: cert.issuer,
    notBefore: new Date(notBeforeMs).toISOString(),
    notAfter: new Date(notAfterMs).toISOString(),
    notBeforeMs,
    notAfterMs,
    isCa: cert.ca,
  };
}

const pemBlock = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** The certificates of a PEM bundle file, each as its own PEM (text between blocks ignored). */
export function splitPemBundle(text: string): string[] {
  return [...text.matchAll(pemBlock)].map((m) => `${m[0]}\n`);
}

/**
 * Checks a bundle that arrived from the hub: at least one and at most
 * maxCertificates entries, each one bounded PEM certificate that is a CA.
 * Throws HAWSER_INVALID_TRUST_BUNDLE naming the first bad entry.
 */
export function validateTrustBundle(caPems: readonly string[], limits: TrustBundleLimits = defaultTrustBundleLimits): CertificateSummary[] {
  const refuse = (why: string) => new HawserError(ErrorCode.InvalidTrustBundle, `trust bundle refused: ${why}`);
  if (caPems.length === 0) throw refuse('it holds no certificate');
  if (caPems.length > limits.maxCertificates) throw refuse(`it holds ${caPems.length} certificates, more than ${limits.maxCertificates}`);
  return caPems.map((pem, i) => {
    const bytes = Buffer.byteLength(pem);
    if (bytes > limits.maxPemBytes) throw refuse(`entry ${i} is ${bytes} bytes, more than ${limits.maxPemBytes}`);
    const blocks = splitPemBundle(pem);
    if (blocks.length !== 1) throw refuse(`entry ${i} holds ${blocks.length} PEM certificates, not exactly one`);
    let summary: CertificateSummary;
    try {
      summary = summarizeCertificate(blocks[0]!);
    } catch (err) {
      throw refuse(`entry ${i} is not a certificate (${(err as Error).message.slice(0, 120)})`);
    }
    if (!summary.isCa) throw refuse(`entry ${i} (${summary.subject.slice(0, 120)}) is not a CA certificate`);
    return summary;
  });
}
