// Kubernetes resource quantities as exact integers of nano-units (BigInt), so
// "how many 100m pods fit in 300m" is 3, never 2.999.

const nanoPerUnit = 10n ** 9n;
const binary: Record<string, bigint> = { Ki: 2n ** 10n, Mi: 2n ** 20n, Gi: 2n ** 30n, Ti: 2n ** 40n, Pi: 2n ** 50n, Ei: 2n ** 60n };
const decimalExponent: Record<string, number> = { n: -9, u: -6, m: -3, '': 0, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 };
const pattern = /^([+-]?)(\d+)(?:\.(\d*))?(?:[eE]([+-]?\d{1,3})|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$/;

/** Nano-units of a quantity, rounded up as Kubernetes does; undefined when it is not one. */
export function parseNano(text: string): bigint | undefined {
  const m = pattern.exec(text.trim());
  if (!m) return undefined;
  const [, sign, whole, fraction = '', exponent, suffix = ''] = m;
  let numerator = BigInt(whole! + fraction) * nanoPerUnit;
  let exp = -fraction.length;
  if (exponent !== undefined) exp += Number(exponent);
  else if (suffix in binary) numerator *= binary[suffix]!;
  else exp += decimalExponent[suffix]!;
  let value: bigint;
  if (exp >= 0) value = numerator * 10n ** BigInt(exp);
  else {
    const d = 10n ** BigInt(-exp);
    value = (numerator + d - 1n) / d;
  }
  return sign === '-' ? -value : value;
}
