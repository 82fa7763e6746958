#!/usr/bin/env node
import { setFlagsFromString } from 'node:v8';
import { HawserError } from '../tunnel/index.js';
import { HubRequestError } from './client.js';
import { UsageError } from './flags.js';

// Commands load on demand: `hawser get` should not pay for the agent's Kubernetes client.
type Run = (argv: string[]) => Promise<number>;
const commands: Record<string, { run: () => Promise<Run>; summary: string }> = {
  hub: { run: async () => (await import('./hub-command.js')).runHub, summary: 'run the hub' },
  agent: {
    run: async () => {
      keepYoungGenerationSmall();
      return (await import('./agent-command.js')).runAgent;
    },
    summary: 'run an agent in an edge cluster',
  },
  approve: { run: async () => (await import('./client-commands.js')).runApprove, summary: 'approve a cluster registration request' },
  deny: { run: async () => (await import('./client-commands.js')).runDeny, summary: 'deny a cluster registration request' },
  apply: { run: async () => (await import('./client-commands.js')).runApply, summary: 'create or replace objects on the hub from files (Clusternet YAML as it is)' },
  get: { run: async () => (await import('./client-commands.js')).runGet, summary: 'list subscriptions and their kin, clusters, registration requests or the PKI' },
  describe: { run: async () => (await import('./client-commands.js')).runDescribe, summary: "show a subscription's placement, replicas per cluster, conditions and errors" },
  delete: { run: async () => (await import('./client-commands.js')).runDelete, summary: 'delete objects (by file or KIND NAME) or a cluster (revoke it, free its name)' },
  kubeconfig: {
    run: async () => (await import('./kubeconfig.js')).runKubeconfig,
    summary: 'print a kubeconfig for kubectl through the hub to one cluster (holds your token: keep it 0600)',
  },
  rotate: { run: async () => (await import('./client-commands.js')).runRotate, summary: "rotate the hub's CA or serving certificate" },
  sync: { run: async () => (await import('./client-commands.js')).runSync, summary: "release a prune a cluster's agent holds (confirm-prune)" },
  demo: {
    run: async () => (await import('./demo.js')).runDemo,
    summary: 'start a hub and agents beside local kube-apiservers (the main job)',
  },
};

/**
 * The agent's memory aim is 70 MB (issue 7 §6). V8 grows each of the young
 * generation's two semi-spaces from 1 MB to 16 MB under allocation (a sync, a
 * reconcile) and never gives them back: ~30 MB of RSS an idle agent keeps
 * (bench/agent-memory). Held at their first size they cost more, smaller
 * scavenges, which an agent's allocation rate makes cheap; --optimize-for-size
 * makes V8 favour memory over speed elsewhere too (heap growth, inlining).
 * Taken only where the operator set no such flag of their own (node flags,
 * NODE_OPTIONS).
 */
function keepYoungGenerationSmall(): void {
  const given = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].some((a) => a.includes('semi-space') || a.includes('optimize-for-size'));
  if (!given) setFlagsFromString('--semi-space-growth-factor=1 --optimize-for-size');
}

function usage(): string {
  const lines = ['hawser: a gRPC-tunnel edge fabric for Kubernetes on weak networks', '', 'Usage: hawser COMMAND [flags]', '', 'Commands:'];
  for (const [name, c] of Object.entries(commands)) lines.push(`  ${name.padEnd(10)} ${c.summary}`);
  lines.push('', 'Run "hawser COMMAND --help" for its flags.');
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return name ? 0 : 2;
  }
  const command = commands[name];
  if (!command) {
    console.error(`hawser: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  return (await command.run())(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError) {
      console.error(`hawser: ${err.message}`);
      process.exitCode = 2;
    } else if (err instanceof HawserError || err instanceof HubRequestError) {
      console.error(`hawser: ${err.code}: ${err.message}`);
      process.exitCode = 1;
    } else if (typeof (err as NodeJS.ErrnoException).syscall === 'string') {
      // A file-system or network error nobody translated: still one sentence, no stack.
      const e = err as NodeJS.ErrnoException;
      console.error(`hawser: ${e.code ?? 'ERROR'}: ${e.message}`);
      process.exitCode = 1;
    } else {
      console.error(`hawser: ${(err as Error).stack ?? String(err)}`);
      process.exitCode = 1;
    }
  },
);
