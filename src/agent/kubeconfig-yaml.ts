// The block YAML that kubectl and client-go write kubeconfigs in, read without
// the yaml package: loaded, yaml costs the agent ~6 MB of RSS (issue 7 §6,
// aim ≤ 70 MB), to read a file of a few KB once. This reads only a strict
// subset (block mappings and sequences, plain, single- and double-quoted
// scalars without escapes, true/false/null, empty {} and []); on anything
// else it answers undefined and the caller parses with yaml, so a kubeconfig
// is never read differently from yaml (test/unit/kubeconfig-yaml.test.ts
// compares the two).

interface Line {
  indent: number;
  text: string;
}

/** Thrown inside: the text leaves the subset. */
class OutsideSubset extends Error {}

const outside = (): never => {
  throw new OutsideSubset();
};

/** The document `text` holds, or undefined when it is not in the subset (parse it with yaml then). */
export function parseKubeconfigYaml(text: string): unknown {
  const lines: Line[] = [];
  for (const raw of text.split(/\r?\n/)) {
    if (raw.includes('\t')) return undefined;
    const trimmed = raw.trimEnd();
    const body = trimmed.trimStart();
    if (body === '' || body.startsWith('#')) continue;
    lines.push({ indent: trimmed.length - body.length, text: body });
  }
  if (lines.length > 0 && lines[0]!.indent === 0 && lines[0]!.text === '---') lines.shift();
  if (lines.length === 0) return undefined;
  try {
    const parser = new BlockParser(lines);
    const value = parser.block(0, lines[0]!.indent);
    if (parser.at < lines.length) return undefined;
    return value;
  } catch (err) {
    if (err instanceof OutsideSubset) return undefined;
    throw err;
  }
}

class BlockParser {
  at = 0;
  constructor(private readonly lines: Line[]) {}

  /** The block starting at line `at`, whose lines are indented by exactly `indent`. */
  block(at: number, indent: number): unknown {
    this.at = at;
    const first = this.lines[at]!;
    if (first.indent !== indent) outside();
    return isSequenceItem(first.text) ? this.sequence(indent) : this.mapping(indent);
  }

  private sequence(indent: number): unknown[] {
    const items: unknown[] = [];
    while (this.at < this.lines.length) {
      const line = this.lines[this.at]!;
      // A line back at the indent that is no item ends it: the next key of the mapping it belongs to.
      if (line.indent < indent || (line.indent === indent && !isSequenceItem(line.text))) break;
      if (line.indent > indent) outside();
      const rest = line.text.slice(1).trimStart();
      if (rest === '') {
        const next = this.lines[this.at + 1];
        if (next && next.indent > indent) items.push(this.block(this.at + 1, next.indent));
        else {
          items.push(null);
          this.at++;
        }
        continue;
      }
      if (isSequenceItem(rest) || mappingKeyEnd(rest) >= 0) {
        // "- key: value" starts a mapping (or "- - x" a sequence) whose column is that of its first key.
        const column = indent + (line.text.length - rest.length);
        this.lines[this.at] = { indent: column, text: rest };
        items.push(this.block(this.at, column));
        continue;
      }
      items.push(scalar(rest));
      this.at++;
    }
    return items;
  }

  private mapping(indent: number): Record<string, unknown> {
    const map: Record<string, unknown> = {};
    while (this.at < this.lines.length) {
      const line = this.lines[this.at]!;
      if (line.indent < indent) break;
      if (line.indent > indent || isSequenceItem(line.text)) outside();
      const end = mappingKeyEnd(line.text);
      if (end < 0) outside();
      const key = keyText(line.text.slice(0, end));
      if (key === '__proto__' || Object.prototype.hasOwnProperty.call(map, key)) outside();
      const rest = line.text.slice(end + 1).trimStart();
      if (rest !== '') {
        map[key] = scalar(rest);
        this.at++;
        continue;
      }
      const next = this.lines[this.at + 1];
      // A nested block is indented further; client-go writes a key's sequence at the key's own indent.
      if (next && (next.indent > indent || (next.indent === indent && isSequenceItem(next.text)))) {
        map[key] = this.block(this.at + 1, next.indent);
      } else {
        map[key] = null;
        this.at++;
      }
    }
    return map;
  }
}

function isSequenceItem(text: string): boolean {
  return text === '-' || text.startsWith('- ');
}

/** Where a "key:" ends (the colon's index), or -1 when the line is no plain or quoted mapping key. */
function mappingKeyEnd(text: string): number {
  if (text.startsWith('"') || text.startsWith("'")) {
    const close = text.indexOf(text[0]!, 1);
    if (close < 0 || text[close + 1] !== ':') return -1;
    return text.length === close + 2 || text[close + 2] === ' ' ? close + 1 : -1;
  }
  const m = /^[A-Za-z0-9_./-]+:(?: |$)/.exec(text);
  return m ? m[0].trimEnd().length - 1 : -1;
}

function keyText(text: string): string {
  if (text.startsWith('"') || text.startsWith("'")) {
    const value = scalar(text);
    return typeof value === 'string' ? value : outside();
  }
  // A plain key that yaml would read as a number, boolean or null is left to yaml.
  return typeof plain(text) === 'string' ? text : outside();
}

function scalar(text: string): unknown {
  if (text === '{}') return {};
  if (text === '[]') return [];
  if (text.startsWith('"')) {
    if (text.length < 2 || !text.endsWith('"') || text.slice(1, -1).includes('"') || text.includes('\\')) outside();
    return text.slice(1, -1);
  }
  if (text.startsWith("'")) {
    const inner = text.slice(1, -1);
    if (text.length < 2 || !text.endsWith("'") || inner.replace(/''/g, '').includes("'")) outside();
    return inner.replace(/''/g, "'");
  }
  return plain(text);
}

/** A plain scalar as YAML 1.2's core schema types it; numbers and anything unusual are left to yaml. */
function plain(text: string): unknown {
  if (/^[[\]{}#&*!|>'"%@`,?:-]/.test(text) && !/^-[^\s]/.test(text)) outside();
  if (text.includes(': ') || text.includes(' #') || text.endsWith(':')) outside();
  if (/^(?:~|null|Null|NULL)$/.test(text)) return null;
  if (/^(?:true|True|TRUE)$/.test(text)) return true;
  if (/^(?:false|False|FALSE)$/.test(text)) return false;
  // Anything yaml might read as a number (ints, floats, 0x, 0o, .inf, .nan): left to yaml.
  if (/^[-+]?[0-9.]/.test(text) || /^[-+]?\.(?:inf|Inf|INF|nan|NaN|NAN)$/.test(text)) outside();
  return text;
}
