// The override types, each applied to one object. JSON Patch (RFC 6902) is
// rfc6902's and JSON Merge Patch (RFC 7396) is tiny-merge-patch's; the field
// patches (Clusternet's FieldJSONPatch and FieldMergePatch) apply either to
// the JSON or YAML text held in one string field, such as a config file in a
// ConfigMap, and write the text back in the same format.
//
// Every function here returns a reason instead of throwing, and none keeps a
// half-applied result: the caller patches its own copy and drops it on failure.

import { applyPatch, type Operation } from 'rfc6902';
import { apply as applyMerge } from 'tiny-merge-patch';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { boundedText, quoteBounded } from '../../api/index.js';
import type { JsonValue, OverrideConfig } from './types.js';

export type PatchResult = { ok: true; value: JsonValue } | { ok: false; reason: string };

/** Clusternet's bound on the operations of one JSON patch. */
export const maxJsonPatchOperations = 10_000;

// logLevel 'error': parse errors throw, and warnings are not written to the process (this module does no I/O).
const yamlParseOptions = { uniqueKeys: true, maxAliasCount: 100, prettyErrors: false, logLevel: 'error' } as const;

function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return boundedText(text.split('\n')[0] ?? '', 200);
}

/** A patch value or a field's text, written in JSON or in YAML (JSON is tried first: it is YAML too, but stricter). */
export function parseJsonOrYaml(text: string): PatchResult {
  try {
    return { ok: true, value: JSON.parse(text) as JsonValue };
  } catch {
    // not JSON: try YAML
  }
  try {
    return { ok: true, value: (parseYaml(text, yamlParseOptions) ?? null) as JsonValue };
  } catch (err) {
    return { ok: false, reason: `is neither JSON nor YAML: ${firstLine(err)}` };
  }
}

function parseAs(text: string, format: 'JSON' | 'YAML'): PatchResult {
  if (format === 'YAML') return parseJsonOrYaml(text);
  try {
    return { ok: true, value: JSON.parse(text) as JsonValue };
  } catch (err) {
    return { ok: false, reason: `is not JSON: ${firstLine(err)}` };
  }
}

function isOperation(value: JsonValue): value is JsonValue & Operation {
  return (
    value !== null &&
    typeof value === 'object' &&
    !Array.isArray(value) &&
    typeof value.op === 'string' &&
    typeof value.path === 'string'
  );
}

/** Applies a JSON patch to `target` in place; stops at the first operation that fails. */
export function applyJsonPatch(target: JsonValue, patch: JsonValue): PatchResult {
  if (!Array.isArray(patch)) return { ok: false, reason: 'a JSONPatch value must be a list of operations' };
  if (patch.length > maxJsonPatchOperations) {
    return { ok: false, reason: `a JSONPatch may hold at most ${maxJsonPatchOperations} operations, not ${patch.length}` };
  }
  for (const [index, op] of patch.entries()) {
    if (!isOperation(op)) return { ok: false, reason: `operation ${index} needs a string "op" and a string "path"` };
    let failure: unknown;
    try {
      failure = applyPatch(target, [op])[0];
    } catch (err) {
      failure = err;
    }
    if (failure) {
      const why = failure instanceof Error && failure.name === 'MissingError' ? `${quoteBounded((failure as Error & { path?: string }).path ?? op.path)} does not exist` : firstLine(failure);
      return { ok: false, reason: `operation ${index} (${boundedText(op.op, 20)} ${quoteBounded(op.path)}): ${why}` };
    }
  }
  return { ok: true, value: target };
}

export function applyMergePatch(target: JsonValue, patch: JsonValue): JsonValue {
  return applyMerge(target, patch) as JsonValue;
}

/** RFC 6901 tokens of a pointer, or undefined when it is not one. */
function pointerTokens(pointer: string): string[] | undefined {
  if (!pointer.startsWith('/')) return undefined;
  return pointer
    .slice(1)
    .split('/')
    .map((t) => t.replaceAll('~1', '/').replaceAll('~0', '~'));
}

function serialize(value: JsonValue, format: 'JSON' | 'YAML'): string {
  // Four spaces, as Clusternet writes a JSON field back.
  if (format === 'JSON') return JSON.stringify(value, null, 4);
  return stringifyYaml(value, { lineWidth: 0, aliasDuplicateObjects: false });
}

/** FieldJSONPatch or FieldMergePatch on `target` in place: patch the text at fieldPath, write it back. */
export function applyFieldPatch(
  target: JsonValue,
  override: Pick<OverrideConfig, 'fieldPath' | 'fieldFormat'>,
  kind: 'json' | 'merge',
  patch: JsonValue,
): PatchResult {
  const fieldPath = override.fieldPath ?? '';
  const tokens = pointerTokens(fieldPath);
  if (tokens === undefined) return { ok: false, reason: `fieldPath ${quoteBounded(fieldPath)} is not a JSON pointer (/path/to/field)` };
  const format = override.fieldFormat ?? 'YAML';
  if (format !== 'YAML' && format !== 'JSON') return { ok: false, reason: `fieldFormat ${quoteBounded(format)} is neither YAML nor JSON` };

  let parent: JsonValue = null;
  let key = '';
  let field: JsonValue | undefined = target;
  for (const token of tokens) {
    if (field === null || typeof field !== 'object' || !Object.hasOwn(field, token)) {
      return { ok: false, reason: `fieldPath ${quoteBounded(fieldPath)} not found` };
    }
    parent = field;
    key = token;
    field = (field as Record<string, JsonValue>)[token];
  }
  if (typeof field !== 'string') return { ok: false, reason: `fieldPath ${quoteBounded(fieldPath)} holds ${field === null ? 'null' : typeof field}, not text` };

  const parsed = parseAs(field, format);
  if (!parsed.ok) return { ok: false, reason: `the text at fieldPath ${quoteBounded(fieldPath)} ${parsed.reason}` };
  let result: JsonValue;
  if (kind === 'merge') {
    result = applyMergePatch(parsed.value, patch);
  } else {
    const patched = applyJsonPatch(parsed.value, patch);
    if (!patched.ok) return { ok: false, reason: `in the text at fieldPath ${quoteBounded(fieldPath)}: ${patched.reason}` };
    result = patched.value;
  }
  (parent as Record<string, JsonValue>)[key] = serialize(result, format);
  return { ok: true, value: target };
}
