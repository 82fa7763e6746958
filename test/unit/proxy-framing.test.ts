import { describe, expect, it } from 'vitest';
import { ProxyRequestHead, ProxyTargetKind } from '../../src/gen/hawser/v1/proxy.js';
import { ErrorCode } from '../../src/tunnel/errors.js';
import { decodeRequestHead, encodeRequestHead, maxProxyHeadBytes } from '../../src/tunnel/proxy.js';

// A request head sent whole in an OpenStream's prelude (feature proxy-prelude).

const head: ProxyRequestHead = {
  method: 'GET',
  path: '/api/v1/namespaces?limit=5',
  headers: [{ name: 'Accept', value: 'application/json' }],
  targetKind: ProxyTargetKind.PROXY_TARGET_KIND_DIRECT,
  targetAddress: '',
  user: 'alice',
  groups: ['team-a'],
  upgrade: false,
  noBody: true,
};

function codeOf(bytes: Uint8Array): string | undefined {
  try {
    decodeRequestHead(bytes);
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

describe('a request head in a prelude', () => {
  it('decodes what encodeRequestHead framed', () => {
    expect(decodeRequestHead(encodeRequestHead(head))).toEqual(head);
  });

  it('refuses a prelude whose length prefix does not match, or that is cut, or oversized', () => {
    const framed = encodeRequestHead(head);
    expect(codeOf(framed.subarray(0, framed.byteLength - 1))).toBe(ErrorCode.ProxyProtocol);
    expect(codeOf(Buffer.concat([framed, Buffer.from([0])]))).toBe(ErrorCode.ProxyProtocol);
    expect(codeOf(Buffer.from([0, 0]))).toBe(ErrorCode.ProxyProtocol);
    const huge = Buffer.alloc(4 + maxProxyHeadBytes + 1);
    huge.writeUInt32BE(maxProxyHeadBytes + 1, 0);
    expect(codeOf(huge)).toBe(ErrorCode.ProxyProtocol);
    const garbage = Buffer.from([0, 0, 0, 2, 0x0a, 0xff]);
    expect(codeOf(garbage)).toBe(ErrorCode.ProxyProtocol);
  });
});
