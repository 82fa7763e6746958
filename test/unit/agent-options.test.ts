import { describe, expect, it } from 'vitest';
import { resolveAgentOptions } from '../../src/agent/run.js';
import { boolFlag, parseFlags } from '../../src/cli/flags.js';
import { agentSpec } from '../../src/cli/agent-command.js';
import { ErrorCode } from '../../src/tunnel/errors.js';

describe('agent options: --enable-compression', () => {
  it('defaults to true', () => {
    expect(resolveAgentOptions({ clusterRegName: 'edge-1' }).enableCompression).toBe(true);
  });

  it('the flag takes true or false, and refuses anything else naming the flag', () => {
    const parsed = (v: string) => boolFlag(parseFlags(agentSpec, [`--enable-compression=${v}`]), 'enable-compression', true);
    expect(parsed('false')).toBe(false);
    expect(parsed('true')).toBe(true);
    expect(boolFlag(parseFlags(agentSpec, []), 'enable-compression', true)).toBe(true);
    expect(() => parsed('no')).toThrow(expect.objectContaining({ message: expect.stringContaining('--enable-compression') }));
  });
});

describe('agent options: --reconnect-jitter', () => {
  it('defaults to 1.5 s, and a cap below it is still a valid configuration (the window is capped)', () => {
    expect(resolveAgentOptions({ clusterRegName: 'edge-1' }).reconnectJitterMs).toBe(1_500);
    const o = resolveAgentOptions({ clusterRegName: 'edge-1', reconnectPeriodMs: 200, maxReconnectPeriodMs: 1_000 });
    expect(o.reconnectJitterMs).toBe(1_500);
  });

  it('refuses a negative window, naming the flag', () => {
    expect(() => resolveAgentOptions({ clusterRegName: 'edge-1', reconnectJitterMs: -1 })).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidOption, message: expect.stringContaining('reconnect-jitter') }),
    );
  });
});

describe('agent options: sync limits', () => {
  it('default to 1.5 MiB objects (etcd) and a 1 GiB desired-state cache', () => {
    const o = resolveAgentOptions({ clusterRegName: 'edge-1' });
    expect(o.maxObjectBytes).toBe(1.5 * 1024 * 1024);
    expect(o.cacheSizeLimitBytes).toBe(1024 * 1024 * 1024);
  });

  it.each([
    [{ maxObjectBytes: 10 }, 'max-object-bytes'],
    [{ cacheSizeLimitBytes: -1 }, 'cache-size-limit'],
  ])('refuses %j, naming the flag', (partial, flag) => {
    expect(() => resolveAgentOptions({ clusterRegName: 'edge-1', ...partial })).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidOption, message: expect.stringContaining(flag) }),
    );
  });
});

describe('agent options: proxy impersonation', () => {
  it('defaults to any non-system user and group', () => {
    const o = resolveAgentOptions({ clusterRegName: 'edge-1' });
    expect(o.proxyImpersonateUsers).toEqual(['*']);
    expect(o.proxyImpersonateGroups).toEqual(['*']);
  });

  it('refuses a wildcard over system: names, naming the flag', () => {
    expect(() => resolveAgentOptions({ clusterRegName: 'edge-1', proxyImpersonateGroups: ['team-*', 'system:*'] })).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidOption, message: expect.stringContaining('--proxy-impersonate-groups') }),
    );
    expect(() => resolveAgentOptions({ clusterRegName: 'edge-1', proxyImpersonateUsers: ['a,b'] })).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidOption, message: expect.stringContaining('--proxy-impersonate-users') }),
    );
  });
});
