// npm run fuzz: throws mutated and random frames at a real hub process over
// gRPC+TLS while real agents beside real kube-apiservers stay connected.
//
//   npm run fuzz -- --frames 1000000 --concurrency 8
//   npm run fuzz -- --seed 123 --case 4567        replay one case of a run
//
// Exits 0 with no findings, 1 with any. Built like bench/ (tsconfig.fuzz.json
// into dist/fuzz); see fuzz/README.md.

import { randomInt } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseDuration } from '../src/tunnel/index.js';
import { findingSignatures, formatFinding, formatReport, runCampaign } from './campaign.js';
import { startWorld } from './world.js';

const { values: flags } = parseArgs({
  options: {
    seed: { type: 'string' },
    frames: { type: 'string', default: '20000' },
    seconds: { type: 'string', default: '3600' },
    concurrency: { type: 'string', default: '8' },
    agents: { type: 'string', default: '2' },
    'max-frame-bytes': { type: 'string', default: '65536' },
    deadline: { type: 'string', default: '10s' },
    case: { type: 'string', multiple: true },
    json: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});

if (flags.help) {
  console.log(`usage: npm run fuzz -- [flags]
  --seed N               seed of the run (default: random, printed); the same seed sends the same frames
  --frames N             stop after about N frames (default 20000)
  --seconds N            or after N seconds (default 3600)
  --concurrency N        streams in flight at once, one worker each (default 8)
  --agents N             healthy agents beside real kube-apiservers, 0-2 (default 2)
  --max-frame-bytes N    the hub's --max-frame-bytes (default 65536: oversized frames stay cheap)
  --deadline 10s         a reply later than this is a hang
  --case K               replay only case K of the seed (repeatable)
  --json FILE            write the whole report as JSON`);
  process.exit(0);
}

function nonNegativeInt(text: string, what: string, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(text.replace(/_/g, ''));
  if (!Number.isInteger(n) || n < 0 || n > max) throw new Error(`${what}: "${text}" is not an integer in [0, ${max}]`);
  return n;
}

const seed = flags.seed === undefined ? randomInt(0, 2 ** 32 - 1) : nonNegativeInt(flags.seed, '--seed', 2 ** 32 - 1);
const onlyCases = flags.case?.map((c) => nonNegativeInt(c, '--case'));
const concurrency = Math.max(1, nonNegativeInt(flags.concurrency, '--concurrency', 256));
const agents = nonNegativeInt(flags.agents, '--agents', 2);

console.error(`fuzz: seed ${seed}${onlyCases ? `, cases ${onlyCases.join(',')}` : ''}; starting hub${agents ? ` and ${agents} healthy agents` : ''}`);
const world = await startWorld({ agents, maxFrameBytes: nonNegativeInt(flags['max-frame-bytes'], '--max-frame-bytes') });
let exitCode = 1;
try {
  const report = await runCampaign(world, {
    seed,
    maxFrames: nonNegativeInt(flags.frames, '--frames'),
    maxSeconds: nonNegativeInt(flags.seconds, '--seconds'),
    concurrency,
    replyDeadlineMs: parseDuration(flags.deadline, '--deadline'),
    ...(onlyCases ? { onlyCases } : {}),
    onFinding: (f) => console.error(formatFinding(f)),
    onProgress: (p) => console.error(`fuzz: ${p.frames} frames, ${p.cases} cases, ${p.findings} findings kept, ${(p.elapsedMs / 1000).toFixed(0)} s`),
  });
  console.log(formatReport(report));
  if (flags.json) writeFileSync(flags.json, JSON.stringify(report, null, 2));
  exitCode = Object.keys(findingSignatures(report)).length === 0 ? 0 : 1;
} finally {
  await world.close();
}
process.exit(exitCode);
