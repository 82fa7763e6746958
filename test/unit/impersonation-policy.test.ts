import { describe, expect, it } from 'vitest';
import {
  defaultImpersonationPolicy,
  impersonationRefusal,
  parseImpersonationPatterns,
} from '../../src/agent/impersonation-policy.js';
import { ErrorCode } from '../../src/tunnel/index.js';

// What the agent may impersonate in its cluster (issue 8 §2): pure policy, no I/O.

function policy(users: string, groups: string) {
  return {
    users: parseImpersonationPatterns(users, '--proxy-impersonate-users'),
    groups: parseImpersonationPatterns(groups, '--proxy-impersonate-groups'),
  };
}

describe('impersonation patterns', () => {
  it('splits on commas, trims, and takes exact names and * wildcards', () => {
    expect(parseImpersonationPatterns(' alice, team-* ,*@example.com', 'f')).toEqual(['alice', 'team-*', '*@example.com']);
    expect(parseImpersonationPatterns('', 'f')).toEqual([]);
  });

  it.each([
    ['a wildcard over system: names', 'system:*'],
    ['a wildcard inside a system: name', 'system:serviceaccount:*'],
    ['an empty entry', 'alice,,bob'],
    ['a control character', 'ali\nce'],
  ])('refuses %s, naming the flag and the entry', (_, text) => {
    let caught: (Error & { code?: string }) | undefined;
    try {
      parseImpersonationPatterns(text, '--proxy-impersonate-groups');
    } catch (err) {
      caught = err as Error & { code?: string };
    }
    expect(caught?.code).toBe(ErrorCode.InvalidOption);
    expect(caught?.message).toContain('--proxy-impersonate-groups');
  });
});

describe('impersonation policy', () => {
  it('by default impersonates any user and group that is not system:', () => {
    const p = defaultImpersonationPolicy();
    expect(impersonationRefusal(p, { user: 'alice', groups: ['team-a', 'oidc:sre'] })).toBeUndefined();
    const err = impersonationRefusal(p, { user: 'alice', groups: ['team-a', 'system:masters'] });
    expect(err?.code).toBe(ErrorCode.ImpersonationRefused);
    expect(err?.message).toContain('group "system:masters"');
    expect(impersonationRefusal(p, { user: 'system:admin', groups: [] })?.message).toContain('user "system:admin"');
  });

  it('a system: name passes only when listed exactly', () => {
    const p = policy('*', '*,system:masters');
    expect(impersonationRefusal(p, { user: 'alice', groups: ['system:masters'] })).toBeUndefined();
    expect(impersonationRefusal(p, { user: 'alice', groups: ['system:nodes'] })?.code).toBe(ErrorCode.ImpersonationRefused);
    expect(impersonationRefusal(policy('system:kube-scheduler', '*'), { user: 'system:kube-scheduler', groups: [] })).toBeUndefined();
  });

  it('a wildcard never reaches a system: name, whatever it starts with', () => {
    for (const pattern of ['*', 's*', 'sys*', '*masters', '*:*']) {
      expect(impersonationRefusal(policy('*', pattern), { user: 'alice', groups: ['system:masters'] })?.code).toBe(ErrorCode.ImpersonationRefused);
    }
  });

  it('only listed users and groups pass; the refusal names the one refused and the flag to change', () => {
    const p = policy('alice,*@example.com', 'team-*');
    expect(impersonationRefusal(p, { user: 'bob@example.com', groups: ['team-a', 'team-b'] })).toBeUndefined();
    const user = impersonationRefusal(p, { user: 'bob', groups: [] });
    expect(user?.message).toContain('user "bob"');
    expect(user?.message).toContain('--proxy-impersonate-users');
    const group = impersonationRefusal(p, { user: 'alice', groups: ['team-a', 'ops'] });
    expect(group?.code).toBe(ErrorCode.ImpersonationRefused);
    expect(group?.message).toContain('group "ops"');
    expect(group?.message).toContain('--proxy-impersonate-groups');
  });

  it('a wildcard matches any run of characters, and nothing else is special', () => {
    const p = policy('a.c,x*y*z', '*');
    expect(impersonationRefusal(p, { user: 'a.c', groups: [] })).toBeUndefined();
    expect(impersonationRefusal(p, { user: 'abc', groups: [] })?.code).toBe(ErrorCode.ImpersonationRefused);
    expect(impersonationRefusal(p, { user: 'xyz', groups: [] })).toBeUndefined();
    expect(impersonationRefusal(p, { user: 'x-1-y-2-z', groups: [] })).toBeUndefined();
    expect(impersonationRefusal(p, { user: 'x-1-z-2-y', groups: [] })?.code).toBe(ErrorCode.ImpersonationRefused);
  });

  it('an empty list impersonates nobody, so the proxy refuses every request', () => {
    expect(impersonationRefusal(policy('', '*'), { user: 'alice', groups: [] })?.message).toContain('--proxy-impersonate-users is empty');
    expect(impersonationRefusal(policy('*', ''), { user: 'alice', groups: [] })).toBeUndefined();
    expect(impersonationRefusal(policy('*', ''), { user: 'alice', groups: ['team-a'] })?.code).toBe(ErrorCode.ImpersonationRefused);
  });
});
