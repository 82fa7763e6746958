import { describe, expect, it } from 'vitest';
import { agentSigningKey } from '../../src/tunnel/proof.js';
import { generateAgentKeyPair, helloProofSubject, proofSignatureValid, signHello, wire } from '../../src/tunnel/index.js';

// Each hello is signed; parsing the PKCS#8 key is ~14x the signature's CPU, so
// the key is parsed once per key, not once per hello.
describe('hello proof signing key', () => {
  it('is parsed once per key: the same KeyObject for the same DER, even from another buffer', () => {
    const pair = generateAgentKeyPair();
    const first = agentSigningKey(pair.privateKeyDer);
    // The agent decodes its key from base64 for every hello: a new buffer, the same bytes.
    const again = agentSigningKey(Buffer.from(Buffer.from(pair.privateKeyDer).toString('base64'), 'base64'));
    expect(again).toBe(first);
    expect(agentSigningKey(generateAgentKeyPair().privateKeyDer)).not.toBe(first);
  });

  it('signs hellos that verify with the cached key, and a proof per hello (fresh nonce)', () => {
    const pair = generateAgentKeyPair();
    const hello = wire.Hello.fromPartial({ clusterId: 'c-1', registration: { name: 'edge-1' }, auth: { $case: 'bootstrapToken', value: 'abcdef.0123456789abcdef' } });
    const a = signHello(hello, pair, 1_000);
    const b = signHello(hello, pair, 1_000);
    for (const signed of [a, b]) expect(proofSignatureValid(helloProofSubject(signed)!, signed.proof!)).toBe(true);
    expect(Buffer.from(a.proof!.nonce).equals(Buffer.from(b.proof!.nonce))).toBe(false);
    // Another key's signature does not verify under this key.
    const other = signHello(hello, generateAgentKeyPair(), 1_000);
    expect(proofSignatureValid(helloProofSubject(a)!, other.proof!)).toBe(false);
  });
});
