import { describe, expect, it } from 'vitest';
import { resolveAgentOptions } from '../../src/agent/run.js';
import { boolFlag, parseFlags } from '../../src/cli/flags.js';
import { agentSpec } from '../../src/cli/serve.js';
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
