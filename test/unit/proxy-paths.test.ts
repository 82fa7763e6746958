import { describe, expect, it } from 'vitest';
import { impersonationHeaders } from '../../src/agent/impersonation.js';
import { parseProxyPath } from '../../src/hub/proxy-paths.js';
import { ErrorCode, forwardedRequestHeaders, forwardedResponseHeaders, isUpgradeRequest } from '../../src/tunnel/index.js';

const sockets = '/apis/proxies.clusternet.io/v1alpha1/sockets';

describe('proxy routes', () => {
  it('/clusters/NAME/... goes to the cluster\'s kube-apiserver with path and query unchanged', () => {
    expect(parseProxyPath('/clusters/edge-1/api/v1/namespaces?limit=5&watch=true')).toEqual({
      cluster: 'edge-1',
      target: { kind: 'direct' },
      path: '/api/v1/namespaces?limit=5&watch=true',
    });
    expect(parseProxyPath('/clusters/edge-1')).toEqual({ cluster: 'edge-1', target: { kind: 'direct' }, path: '/' });
    expect(parseProxyPath('/clusters/edge-1?x=1')).toEqual({ cluster: 'edge-1', target: { kind: 'direct' }, path: '/?x=1' });
  });

  it('Clusternet\'s sockets paths: direct, and https to HOST:PORT', () => {
    const id = '0b1e2f3a-1111-4222-8333-444455556666';
    expect(parseProxyPath(`${sockets}/${id}/proxy/direct/api/v1/pods`)).toEqual({ cluster: id, target: { kind: 'direct' }, path: '/api/v1/pods' });
    expect(parseProxyPath(`${sockets}/${id}/proxy/https/10.0.0.7:8443/healthz?verbose`)).toEqual({
      cluster: id,
      target: { kind: 'https', address: '10.0.0.7:8443' },
      path: '/healthz?verbose',
    });
    expect(parseProxyPath(`${sockets}/${id}/proxy/https/svc.edge.local:443`)).toEqual({
      cluster: id,
      target: { kind: 'https', address: 'svc.edge.local:443' },
      path: '/',
    });
  });

  it('other paths are not proxy routes', () => {
    expect(parseProxyPath('/api/v1/clusters')).toBeUndefined();
    expect(parseProxyPath('/metrics')).toBeUndefined();
    expect(parseProxyPath('/clustersX/a')).toBeUndefined();
  });

  it('a proxy path naming no valid cluster or target is HAWSER_MALFORMED_PATH', () => {
    for (const bad of [
      '/clusters//api',
      '/clusters/%zz/api',
      '/clusters/a%2Fb/api',
      `${sockets}/x/other/direct`,
      `${sockets}/x/proxy/http/host:80/`,
      `${sockets}/x/proxy/https/host/`,
      `${sockets}/x/proxy/https/host:0/`,
      `${sockets}/x/proxy/https/host:99999/`,
      `${sockets}/x/proxy/https/a@b:80/`,
    ]) {
      expect(() => parseProxyPath(bad), bad).toThrow(expect.objectContaining({ code: ErrorCode.MalformedPath }));
    }
  });
});

describe('headers across the proxy', () => {
  it('drops the operator\'s credential, Impersonate-*, Host and hop-by-hop headers; keeps the rest in order', () => {
    const raw = [
      'Host', 'hub:7101',
      'Authorization', 'Bearer hwo_secret',
      'Impersonate-User', 'system:admin',
      'impersonate-group', 'system:masters',
      'Impersonate-Extra-scopes', 'x',
      'Accept', 'application/json',
      'Connection', 'keep-alive, X-Hop',
      'X-Hop', 'dropped',
      'Keep-Alive', 'timeout=5',
      'Transfer-Encoding', 'chunked',
      'Content-Type', 'application/yaml',
      'Accept', 'text/plain',
    ];
    expect(forwardedRequestHeaders(raw, false)).toEqual([
      { name: 'Accept', value: 'application/json' },
      { name: 'Content-Type', value: 'application/yaml' },
      { name: 'Accept', value: 'text/plain' },
    ]);
  });

  it('an upgrade keeps Upgrade and says Connection: Upgrade to the next hop', () => {
    const raw = ['Connection', 'Upgrade', 'Upgrade', 'websocket', 'Sec-WebSocket-Key', 'k', 'Authorization', 'Bearer t'];
    expect(isUpgradeRequest(raw)).toBe(true);
    expect(forwardedRequestHeaders(raw, true)).toEqual([
      { name: 'Upgrade', value: 'websocket' },
      { name: 'Sec-WebSocket-Key', value: 'k' },
      { name: 'Connection', value: 'Upgrade' },
    ]);
    expect(isUpgradeRequest(['Upgrade', 'websocket'])).toBe(false);
    expect(isUpgradeRequest(['Connection', 'keep-alive'])).toBe(false);
  });

  it('response headers lose hop-by-hop ones, except Upgrade after a 101', () => {
    const raw = ['Content-Type', 'application/json', 'Transfer-Encoding', 'chunked', 'Connection', 'keep-alive', 'Audit-Id', 'a1'];
    expect(forwardedResponseHeaders(raw, false)).toEqual([
      { name: 'Content-Type', value: 'application/json' },
      { name: 'Audit-Id', value: 'a1' },
    ]);
    expect(forwardedResponseHeaders(['Upgrade', 'SPDY/3.1', 'Connection', 'Upgrade', 'X-Stream-Protocol-Version', 'v4.channel.k8s.io'], true)).toEqual([
      { name: 'Upgrade', value: 'SPDY/3.1' },
      { name: 'X-Stream-Protocol-Version', value: 'v4.channel.k8s.io' },
      { name: 'Connection', value: 'Upgrade' },
    ]);
  });
});

describe('impersonation', () => {
  it('impersonates the operator and its groups', () => {
    expect(impersonationHeaders({ user: 'alice', groups: ['dev', 'ops'] })).toEqual([
      ['Impersonate-User', 'alice'],
      ['Impersonate-Group', 'dev'],
      ['Impersonate-Group', 'ops'],
    ]);
  });

  it('refuses no user (the agent\'s own rights) and any system: name', () => {
    for (const identity of [
      { user: '', groups: [] },
      { user: 'system:admin', groups: [] },
      { user: 'alice', groups: ['system:masters'] },
    ]) {
      expect(() => impersonationHeaders(identity)).toThrow(expect.objectContaining({ code: ErrorCode.ImpersonationRefused }));
    }
  });
});
