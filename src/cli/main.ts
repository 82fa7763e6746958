#!/usr/bin/env node
import { HawserError } from '../tunnel/index.js';
import { runApprove, runGet } from './client-commands.js';
import { HubRequestError } from './client.js';
import { runDemo } from './demo.js';
import { UsageError } from './flags.js';
import { runAgent, runHub } from './serve.js';

const commands: Record<string, { run: (argv: string[]) => Promise<number>; summary: string }> = {
  hub: { run: runHub, summary: 'run the hub' },
  agent: { run: runAgent, summary: 'run an agent in an edge cluster' },
  approve: { run: runApprove, summary: 'approve a cluster registration request' },
  get: { run: runGet, summary: 'list clusters or registration requests' },
  demo: { run: runDemo, summary: 'start a hub and agents beside local kube-apiservers (the main job)' },
};

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
  return command.run(rest);
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
    } else {
      console.error(`hawser: ${(err as Error).stack ?? String(err)}`);
      process.exitCode = 1;
    }
  },
);
