// Kubernetes resource quantities, enough to sum node allocatable/capacity.
const suffixes: Record<string, number> = {
  '': 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

export function parseQuantity(text: string): number {
  const m = /^([+-]?\d+(?:\.\d+)?)(?:[eE]([+-]?\d+))?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/.exec(text.trim());
  if (!m) throw new RangeError(`"${text}" is not a Kubernetes quantity`);
  return Number(m[1]) * 10 ** Number(m[2] ?? 0) * suffixes[m[3] ?? '']!;
}

/** Canonical-ish text: whole numbers plain, fractions in milli, binary sizes in Ki. */
export function formatQuantity(resource: string, value: number): string {
  if (resource === 'memory' || resource.includes('storage') || resource.startsWith('hugepages-')) {
    return value % 1024 === 0 && value > 0 ? `${value / 1024}Ki` : `${Math.round(value)}`;
  }
  if (Number.isInteger(value)) return String(value);
  // Sums of milli values carry float error (10 x 100m = 0.9999999999999999): round first.
  const milli = Math.round(value * 1000);
  return milli % 1000 === 0 ? String(milli / 1000) : `${milli}m`;
}

export function sumQuantities(lists: Array<Record<string, string> | undefined>): Record<string, string> {
  const totals = new Map<string, number>();
  for (const list of lists) {
    for (const [k, v] of Object.entries(list ?? {})) totals.set(k, (totals.get(k) ?? 0) + parseQuantity(v));
  }
  return Object.fromEntries([...totals].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, formatQuantity(k, v)]));
}
