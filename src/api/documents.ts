import { parseAllDocuments } from 'yaml';
import { quoteBounded } from './quote.js';

// Multi-document YAML (JSON is YAML too) as `apply -f` reads it: every
// document with where it came from, so a refusal can say "app.yaml, document
// 2". Empty documents are skipped; a v1 List is unrolled into its items, as
// kubectl does.

/** Documents in one request, at most: far more than a directory of manifests holds. */
export const maxDocuments = 10_000;

export interface SourcedDocument {
  /** "app.yaml, document 2" (or "document 2" without a source name). */
  source: string;
  doc: unknown;
}

export type DocumentsResult =
  | { ok: true; documents: SourcedDocument[] }
  | { ok: false; code: 'HAWSER_INVALID_YAML' | 'HAWSER_TOO_MANY_DOCUMENTS'; message: string };

function where(sourceName: string | undefined, index: number, item?: number): string {
  const doc = `document ${index + 1}${item === undefined ? '' : `, item ${item}`}`;
  return sourceName ? `${quoteBounded(sourceName, 200).slice(1, -1)}, ${doc}` : doc;
}

/** Parses YAML or JSON text holding one or more documents; any syntax error refuses the whole text. */
export function parseDocuments(text: string, sourceName?: string): DocumentsResult {
  const documents: SourcedDocument[] = [];
  let parsed;
  try {
    parsed = parseAllDocuments(text, { prettyErrors: true, uniqueKeys: true });
  } catch (err) {
    return { ok: false, code: 'HAWSER_INVALID_YAML', message: `${sourceName ?? 'input'}: ${(err as Error).message.split('\n')[0]}` };
  }
  const list = Array.isArray(parsed) ? parsed : [parsed];
  for (const [index, document] of list.entries()) {
    const error = document.errors[0];
    if (error) {
      const line = error.linePos?.[0];
      const at = line ? ` at line ${line.line}, column ${line.col}` : '';
      return { ok: false, code: 'HAWSER_INVALID_YAML', message: `${where(sourceName, index)}: invalid YAML${at}: ${error.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}` };
    }
    let doc: unknown;
    try {
      doc = document.toJS({ maxAliasCount: 100 });
    } catch (err) {
      return { ok: false, code: 'HAWSER_INVALID_YAML', message: `${where(sourceName, index)}: ${(err as Error).message.split('\n')[0]}` };
    }
    if (doc === null || doc === undefined) continue;
    const record = doc as Record<string, unknown>;
    if (record.kind === 'List' && record.apiVersion === 'v1' && Array.isArray(record.items)) {
      record.items.forEach((item, i) => documents.push({ source: where(sourceName, index, i), doc: item }));
    } else {
      documents.push({ source: where(sourceName, index), doc });
    }
    if (documents.length > maxDocuments) {
      return { ok: false, code: 'HAWSER_TOO_MANY_DOCUMENTS', message: `${sourceName ?? 'input'}: more than ${maxDocuments} documents in one apply` };
    }
  }
  return { ok: true, documents };
}
