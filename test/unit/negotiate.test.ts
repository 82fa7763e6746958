import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/tunnel/errors.js';
import { acceptWelcome, Feature, maxOfferedFeatures, negotiate, type ProtocolOffer } from '../../src/tunnel/negotiate.js';

const offer = (protocolVersion: number, minProtocolVersion: number, features: string[] = []): ProtocolOffer => ({
  protocolVersion,
  minProtocolVersion,
  features,
});

describe('negotiate (hub side)', () => {
  it('speaks the newest version both support and only the features both name, in the hub order', () => {
    const hub = offer(3, 1, [Feature.Sync, Feature.Chunks, Feature.ProxyStreams]);
    const agent = offer(2, 1, [Feature.ProxyStreams, Feature.CompressionDeflate, Feature.Sync]);
    const n = negotiate(hub, agent);
    expect(n.protocolVersion).toBe(2);
    expect([...n.features]).toEqual([Feature.Sync, Feature.ProxyStreams]);
  });

  it('serves an agent from before versioning (0) as protocol 1 with no features, whatever it lists', () => {
    const n = negotiate(offer(3, 1, [Feature.Sync]), offer(0, 0, [Feature.Sync]));
    expect(n.protocolVersion).toBe(1);
    expect([...n.features]).toEqual([]);
  });

  it('takes an unset minimum as the same as the version', () => {
    expect(negotiate(offer(2, 0), offer(2, 0)).protocolVersion).toBe(2);
    expect(() => negotiate(offer(3, 0), offer(2, 0))).toThrow(expect.objectContaining({ code: ErrorCode.ProtocolIncompatible }));
  });

  it('serves a newer agent at the hub version when the agent still speaks it', () => {
    expect(negotiate(offer(1, 1), offer(5, 1)).protocolVersion).toBe(1);
  });

  it('refuses ranges that do not overlap with a code, naming the side to upgrade', () => {
    expect(() => negotiate(offer(4, 3), offer(2, 1))).toThrow(
      expect.objectContaining({ code: ErrorCode.ProtocolIncompatible, message: expect.stringContaining('upgrade the agent') }),
    );
    expect(() => negotiate(offer(2, 1), offer(5, 4))).toThrow(/upgrade the hub/);
    // An old agent (0 = protocol 1) against a hub that dropped protocol 1.
    expect(() => negotiate(offer(3, 2), offer(0, 0))).toThrow(expect.objectContaining({ code: ErrorCode.ProtocolIncompatible }));
  });

  it('reads only the first features of a flood of names', () => {
    const flood = [...Array.from({ length: maxOfferedFeatures }, (_, i) => `junk-${i}`), Feature.Sync];
    expect([...negotiate(offer(1, 1, [Feature.Sync]), offer(1, 1, flood)).features]).toEqual([]);
    expect([...negotiate(offer(1, 1, [Feature.Sync]), offer(1, 1, [Feature.Sync, ...flood])).features]).toEqual([Feature.Sync]);
  });
});

describe('acceptWelcome (agent side)', () => {
  const agent = offer(2, 1, [Feature.Sync, Feature.Chunks]);

  it('accepts a version in its range and the features it offered', () => {
    const n = acceptWelcome(agent, { protocolVersion: 2, features: [Feature.Sync] });
    expect(n.protocolVersion).toBe(2);
    expect([...n.features]).toEqual([Feature.Sync]);
  });

  it('takes a welcome from a hub before versioning as protocol 1 with no features', () => {
    const n = acceptWelcome(agent, { protocolVersion: 0, features: [] });
    expect(n.protocolVersion).toBe(1);
    expect(n.features.size).toBe(0);
  });

  it('refuses a version outside its range and a feature it never offered', () => {
    expect(() => acceptWelcome(agent, { protocolVersion: 3, features: [] })).toThrow(
      expect.objectContaining({ code: ErrorCode.ProtocolIncompatible, message: expect.stringContaining('upgrade the agent') }),
    );
    expect(() => acceptWelcome(offer(3, 2), { protocolVersion: 0, features: [] })).toThrow(
      expect.objectContaining({ code: ErrorCode.ProtocolIncompatible, message: expect.stringContaining('upgrade the hub') }),
    );
    expect(() => acceptWelcome(agent, { protocolVersion: 2, features: [Feature.ProxyStreams] })).toThrow(
      expect.objectContaining({ code: ErrorCode.ProtocolIncompatible, message: expect.stringContaining('"proxy-streams"') }),
    );
  });
});
