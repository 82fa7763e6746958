// Untrusted input goes into logs and error messages only bounded: its first
// characters and its length, so a 1 MB name cannot flood a log or a status.

export const defaultQuoteChars = 256;

/** At most `max` characters of `value`; a longer value says how long it was. */
export function boundedText(value: unknown, max = defaultQuoteChars): string {
  const text = typeof value === 'string' ? value : String(value);
  if (text.length <= max) return text;
  return `${text.slice(0, max)}… (${text.length} characters)`;
}

/** JSON-quotes at most `max` characters of `value`; a longer value says how long it was. */
export function quoteBounded(value: unknown, max = defaultQuoteChars): string {
  const text = typeof value === 'string' ? value : String(value);
  if (text.length <= max) return JSON.stringify(text);
  return `${JSON.stringify(text.slice(0, max))}… (${text.length} characters)`;
}
