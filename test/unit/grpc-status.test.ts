import { describe, expect, it } from 'vitest';
import { ErrorCode, hawserErrorFromStatus } from '../../src/tunnel/index.js';

// How a failed dial's gRPC status becomes a hawser code. Certificate problems
// need an operator, so they get their own code (the agent retries them only
// at its backoff cap); anything else on the wire is a transient UNAVAILABLE.

const UNAVAILABLE = 14;

describe('hawserErrorFromStatus', () => {
  it.each([
    ['No connection established. Last error: Error: self-signed certificate in certificate chain', /not trusted by --parent-ca-file/],
    ['No connection established. Last error: Error: unable to verify the first certificate', /not trusted by --parent-ca-file/],
    ["No connection established. Last error: Error [ERR_TLS_CERT_ALTNAME_INVALID]: Hostname/IP does not match certificate's altnames: IP: 10.0.0.9 is not in the cert's list", /does not name the address/],
    ['No connection established. Last error: Error: certificate has expired', /outside its validity period/],
  ])('a dial failing with %j is an untrusted hub', (details, message) => {
    const error = hawserErrorFromStatus({ code: UNAVAILABLE, details });
    expect(error.code).toBe(ErrorCode.UntrustedHub);
    expect(error.message).toMatch(message);
  });

  it('a refused connection stays a transient UNAVAILABLE', () => {
    const error = hawserErrorFromStatus({ code: UNAVAILABLE, details: 'No connection established. Last error: connect ECONNREFUSED 127.0.0.1:7100' });
    expect(error.code).toBe(ErrorCode.Unavailable);
  });
});
