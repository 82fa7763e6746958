import { UsageError } from './flags.js';

// What the long-running commands share: hub (hub-command.ts) and agent
// (agent-command.ts) stop cleanly on SIGINT/SIGTERM and refuse secrets as flags.
// Each command is its own module so that `hawser agent` never loads the hub.

export function onSignals(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(`stop after ${signal} failed: ${(err as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

/** Secrets never go on a command line (every local user sees it in ps). */
export function refuseSecretFlags(argv: string[], instead: string): void {
  for (const arg of argv) {
    if (arg === '--') return;
    if (arg === '--bootstrap-token' || arg.startsWith('--bootstrap-token=')) {
      throw new UsageError(`--bootstrap-token is not accepted: a token on the command line is visible to every local user in ps; use ${instead}`);
    }
  }
}
