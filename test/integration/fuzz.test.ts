import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CampaignReport, formatFinding, formatReport, runCampaign } from '../../fuzz/campaign.js';
import { caseClasses } from '../../fuzz/frames.js';
import { type FuzzWorld, startWorld } from '../../fuzz/world.js';

// A small fuzz run (npm run fuzz, a few thousand frames) against a real hub
// process over gRPC+TLS, with a real agent beside a real kube-apiserver.
// Every frame must get a coded refusal or a valid answer, the hub must stay
// up within its memory bound, and the agent must stay Ready on one session.

const seed = Number(process.env['HAWSER_FUZZ_SEED'] ?? 20261122);
const frames = 3_000;

/**
 * Finding classes ("signature @ case class") this branch is known to show.
 * The 'limits' entries are fixed on the limits branch of issue 5: after
 * merging it, delete them, and the test then requires that they no longer
 * appear. (A trial merge of fuzz and limits at 4d74e5e, seed 1156061655,
 * 30,000 frames, showed only the two half-close classes.)
 */
describe('fuzz: mutated and random frames against a real hub', () => {
  let world: FuzzWorld;
  let report: CampaignReport;

  beforeAll(async () => {
    world = await startWorld({ agents: 1, maxFrameBytes: 64 * 1024 });
    report = await runCampaign(world, { seed, maxFrames: frames, maxSeconds: 120, concurrency: 8, replyDeadlineMs: 5_000 });
    console.log(formatReport(report));
    for (const f of report.run.findings) console.log(formatFinding(f));
  }, 420_000);

  afterAll(() => world?.close());

  it('sends every class of case', () => {
    expect(report.run.frames).toBeGreaterThanOrEqual(frames);
    expect(Object.keys(report.run.classes).sort()).toEqual([...caseClasses].sort());
  });

  it('gets a coded refusal or a valid answer for every frame', () => {
    expect(Object.keys(report.run.findingsByClass), `seed ${seed}`).toEqual([]);
    // Signed fuzzed hellos get past the proof check into registration's own validation.
    expect(report.run.answers['goodbye:HAWSER_INVALID_REGISTRATION'] ?? 0).toBeGreaterThan(0);
    expect(report.run.answers['heartbeatAck'] ?? 0).toBeGreaterThan(0);
    expect(report.run.answers['goodbye:HAWSER_MALFORMED_FRAME'] ?? 0).toBeGreaterThan(0);
  });

  it('keeps the hub up within its memory bound and the healthy agent Ready on one session', () => {
    expect(report.runFindings, `seed ${seed}`).toEqual([]);
    expect(world.hub.proc.running).toBe(true);
    const [agent] = report.monitor.agents;
    expect(agent?.readyChecks).toBeGreaterThan(0);
    expect(agent?.notReady).toBe(0);
    expect(agent?.sessionsEnd).toBe(agent?.sessionsStart);
    expect(report.monitor.rss.peakBytes - report.monitor.rss.startBytes).toBeLessThanOrEqual(report.rssBoundBytes);
  });
});
