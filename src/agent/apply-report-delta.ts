import { randomUUID } from 'node:crypto';
import { ErrorCode, HawserError, wire } from '../tunnel/index.js';

// Feature "apply-report.delta": an apply report carries only the rows that
// changed since the report the hub acknowledged last on this session, in
// parts of at most maxReportPartBytes, one part at a time (each after the
// hub's ack of the one before). A full report of 2,049 rows is ~180 KB: on a
// 32 KB/s link one frame of it held every heartbeat back for seconds, and a
// periodic pass that changed nothing sent it all again.
//
// The base outlives a session: after a reconnect to the same hub the next
// report is a delta again (a link reset every 30 s would otherwise resend
// every row each time). The hub answers full_needed when it lacks the base
// (it restarted, another hub replica, a report lost with its session) and
// the latest report then goes whole.

/** One report frame at most this many bytes (encoded), a row larger than that alone in its frame: half a sync chunk. */
export const maxReportPartBytes = 16 * 1024;

/** A row's identity, as the hub keys its status rows. */
function rowKey(row: wire.ObjectApplyStatus): string {
  const k = row.key;
  return JSON.stringify([k?.apiVersion ?? '', k?.kind ?? '', k?.namespace ?? '', k?.name ?? '']);
}

/** A report's rows by key (the last of a key twice, as the hub keeps), each with its encoded bytes to compare with the base's. */
export type ReportRows = Map<string, { row: wire.ObjectApplyStatus; encoded: string }>;

export function rowsByKey(report: wire.ApplyReport): ReportRows {
  const rows: ReportRows = new Map();
  for (const row of report.objects) {
    const key = rowKey(row);
    rows.delete(key);
    rows.set(key, { row, encoded: Buffer.from(wire.ObjectApplyStatus.encode(row).finish()).toString('latin1') });
  }
  return rows;
}

/** The rows that differ from `base`, and the base's rows no longer there (key only, removed). */
export function deltaRows(rows: ReportRows, base: ReportRows): wire.ObjectApplyStatus[] {
  const changed: wire.ObjectApplyStatus[] = [];
  for (const [key, r] of rows) if (base.get(key)?.encoded !== r.encoded) changed.push(r.row);
  for (const [key, old] of base) {
    if (!rows.has(key)) changed.push({ key: old.row.key, subscriptions: [], action: '', errorCode: '', errorMessage: '', observedStatusJson: '', removed: true });
  }
  return changed;
}

/** Splits `rows` into frames of at most partBytes (encoded), each with the report's other fields. */
export function reportParts(report: wire.ApplyReport, rows: readonly wire.ObjectApplyStatus[], id: number, baseId: number, partBytes = maxReportPartBytes, sender = ''): wire.ApplyReport[] {
  const header = { ...report, objects: [] };
  // The header with its part (at the widest), and each row's field tag and length prefix.
  const overhead = wire.ApplyReport.encode({ ...header, part: { id, baseId, index: 0xffffffff, count: 0xffffffff, sender } }).finish().length;
  const groups: wire.ObjectApplyStatus[][] = [[]];
  let bytes = overhead;
  for (const row of rows) {
    const size = wire.ObjectApplyStatus.encode(row).finish().length + 4;
    if (groups.at(-1)!.length > 0 && bytes + size > partBytes) {
      groups.push([]);
      bytes = overhead;
    }
    groups.at(-1)!.push(row);
    bytes += size;
  }
  return groups.map((objects, index) => ({ ...header, objects, part: { id, baseId, index, count: groups.length, sender } }));
}

interface InFlight {
  report: wire.ApplyReport;
  id: number;
  rows: ReportRows;
  parts: wire.ApplyReport[];
  index: number;
}

/** Counts of what one session's sender did (tests and benchmarks). */
export interface ReportSenderCounters {
  reports: number;
  fullReports: number;
  frames: number;
  bytes: number;
  largestFrameBytes: number;
  fullNeeded: number;
}

/** An agent's apply reports to hubs that negotiated "apply-report.delta", over its sessions. */
export class ApplyReportSender {
  private base: { id: number; rows: ReportRows } | undefined;
  private nextId = 1;
  private inFlight: InFlight | undefined;
  private pending: wire.ApplyReport | undefined;
  private transmit: ((report: wire.ApplyReport) => void) | undefined;
  readonly counters: ReportSenderCounters = { reports: 0, fullReports: 0, frames: 0, bytes: 0, largestFrameBytes: 0, fullNeeded: 0 };

  constructor(
    transmit?: (report: wire.ApplyReport) => void,
    private readonly partBytes = maxReportPartBytes,
    /** Names this sender's ids to the hub. */
    readonly sender: string = randomUUID(),
  ) {
    this.transmit = transmit;
  }

  /**
   * A new session (undefined: none; reports wait). What was in flight on the
   * last one is lost with it: `latest`, or else that report, goes now, as a
   * delta against the base.
   */
  attach(transmit: ((report: wire.ApplyReport) => void) | undefined, latest?: wire.ApplyReport): void {
    this.transmit = transmit;
    this.pending = latest ?? this.pending ?? this.inFlight?.report;
    this.inFlight = undefined;
    this.next();
  }

  /** Nothing in flight and nothing waiting. */
  get idle(): boolean {
    return !this.inFlight && !this.pending;
  }

  /** The latest report: sent now, or once the one in flight is acknowledged (a newer one replaces it while it waits). */
  submit(report: wire.ApplyReport): void {
    this.pending = report;
    if (!this.inFlight && this.transmit) this.next();
  }

  /** The hub's answer to the part in flight. Any other is HAWSER_SYNC_PROTOCOL. */
  acked(ack: wire.ApplyReportAck): void {
    const f = this.inFlight;
    if (!f || Number(ack.id) !== f.id || ack.index !== f.index) {
      throw new HawserError(ErrorCode.SyncProtocol, `apply report ack for part ${ack.index} of report ${ack.id}, which is not in flight`);
    }
    if (ack.fullNeeded) {
      // The hub lacks the base: the latest report goes whole.
      this.counters.fullNeeded++;
      this.base = undefined;
      this.inFlight = undefined;
      this.pending ??= f.report;
      this.next();
      return;
    }
    if (f.index + 1 < f.parts.length) {
      f.index++;
      this.send(f.parts[f.index]!);
      return;
    }
    this.base = { id: f.id, rows: f.rows };
    this.inFlight = undefined;
    this.next();
  }

  private next(): void {
    if (!this.transmit) return;
    const report = this.pending;
    this.pending = undefined;
    if (!report) return;
    const id = this.nextId++;
    const rows = rowsByKey(report);
    const changed = this.base ? deltaRows(rows, this.base.rows) : report.objects;
    const parts = reportParts(report, changed, id, this.base?.id ?? 0, this.partBytes, this.sender);
    this.counters.reports++;
    if (!this.base) this.counters.fullReports++;
    this.inFlight = { report, id, rows, parts, index: 0 };
    this.send(parts[0]!);
  }

  private send(part: wire.ApplyReport): void {
    const bytes = wire.ApplyReport.encode(part).finish().length;
    this.counters.frames++;
    this.counters.bytes += bytes;
    this.counters.largestFrameBytes = Math.max(this.counters.largestFrameBytes, bytes);
    this.transmit?.(part);
  }
}
