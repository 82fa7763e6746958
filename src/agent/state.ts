import type { HawserError } from '../tunnel/index.js';

// The agent's connection as a state machine: one setState owns transitions,
// and only listed transitions are allowed.

export type AgentState =
  | { kind: 'idle' }
  | { kind: 'connecting'; attempt: number }
  | { kind: 'registering'; pendingRequest?: string }
  | { kind: 'ready'; clusterName: string; since: number }
  | { kind: 'backing-off'; delayMs: number; reason: HawserError }
  | { kind: 'stopped' };

export type AgentStateKind = AgentState['kind'];

const allowed: Record<AgentStateKind, readonly AgentStateKind[]> = {
  idle: ['connecting', 'stopped'],
  connecting: ['registering', 'backing-off', 'stopped'],
  registering: ['registering', 'ready', 'backing-off', 'stopped'],
  ready: ['backing-off', 'stopped'],
  'backing-off': ['connecting', 'stopped'],
  stopped: [],
};

export function canTransition(from: AgentStateKind, to: AgentStateKind): boolean {
  return allowed[from].includes(to);
}
