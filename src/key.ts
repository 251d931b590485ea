// A task's key is a document (design rule 1): kind and version, parameters, input fingerprints,
// tool versions, environment, and the output hashes of upstream tasks. The state keeps it whole,
// so `explain` can say which field changed.
import { CHANGED_WHILE_RUNNING } from "./fingerprint/deferred.ts";
import { canonicalJson, hashString } from "./hash.ts";
import type { Json } from "./types.ts";

export interface KeyDoc {
  kind: string;
  version: number;
  params: Record<string, Json>;
  inputs: Record<string, Json>;
  env: Record<string, string | null>;
  tools: Record<string, string>;
  deps: Record<string, string>;
  /** Content hash of each file a render task generates. */
  files?: Record<string, string>;
}

/**
 * The key's canonical JSON: the same text as canonicalJson(key), built field by field because a
 * no-op run computes it for every task (canonicalJson's replacer is the slow part there).
 */
export function keyText(key: KeyDoc): string {
  const fields: string[] = [`"deps":${mapText(key.deps)}`, `"env":${mapText(key.env)}`];
  if (key.files !== undefined) fields.push(`"files":${mapText(key.files)}`);
  fields.push(
    `"inputs":${mapText(key.inputs)}`,
    `"kind":${JSON.stringify(key.kind)}`,
    `"params":${canonicalJson(key.params)}`,
    `"tools":${mapText(key.tools)}`,
    `"version":${JSON.stringify(key.version)}`,
  );
  return `{${fields.join(",")}}`;
}

const ARRAY_INDEX = /^(?:0|[1-9]\d{0,9})$/;

/** An object's keys in the order canonicalJson writes them: array indices first, as JSON.stringify does. */
function canonicalOrder(keys: string[]): string[] {
  keys.sort();
  if (!keys.some((k) => ARRAY_INDEX.test(k) && Number(k) < 2 ** 32 - 1)) return keys;
  const indices = keys.filter((k) => ARRAY_INDEX.test(k) && Number(k) < 2 ** 32 - 1).sort((a, b) => Number(a) - Number(b));
  return [...indices, ...keys.filter((k) => !indices.includes(k))];
}

function mapText(map: Record<string, Json | undefined>): string {
  let out = "";
  for (const name of canonicalOrder(Object.keys(map))) {
    const value = map[name];
    if (value === undefined) continue;
    out += `${out ? "," : ""}${JSON.stringify(name)}:${typeof value === "object" && value !== null ? canonicalJson(value) : JSON.stringify(value)}`;
  }
  return `{${out}}`;
}

export function keyHash(key: KeyDoc): string {
  return hashString(keyText(key));
}

const SECTIONS: Array<[keyof KeyDoc, string]> = [
  ["kind", "kind"],
  ["version", "version"],
  ["params", "parameter"],
  ["inputs", "input"],
  ["env", "environment variable"],
  ["tools", "tool"],
  ["deps", "upstream"],
  ["files", "generated file"],
];

export interface KeyChange {
  section: string;
  field: string;
  before: Json | undefined;
  after: Json | undefined;
}

function short(value: Json | undefined): string {
  if (value === undefined) return "(none)";
  const text = typeof value === "string" ? value : canonicalJson(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** Field-by-field differences between a recorded and a current key. */
export function diffKeys(before: KeyDoc, after: KeyDoc): KeyChange[] {
  const changes: KeyChange[] = [];
  for (const [section, label] of SECTIONS) {
    const a = before[section] as Json | undefined;
    const b = after[section] as Json | undefined;
    if (canonicalJson(a ?? null) === canonicalJson(b ?? null)) continue;
    if (a && b && typeof a === "object" && typeof b === "object" && !Array.isArray(a) && !Array.isArray(b)) {
      const fields = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
      for (const field of fields) {
        const va = (a as Record<string, Json>)[field];
        const vb = (b as Record<string, Json>)[field];
        if (canonicalJson(va ?? null) !== canonicalJson(vb ?? null)) changes.push({ section: label, field, before: va, after: vb });
      }
    } else {
      changes.push({ section: label, field: section, before: a, after: b });
    }
  }
  return changes;
}

/** One line per change, for `plan` reasons. */
export function describeChange(change: KeyChange): string {
  const { section, field, before, after } = change;
  if (section === "input") {
    if (before === undefined) return `new input ${field}`;
    if (after === undefined) return `input ${field} no longer used`;
    if (after === "missing") return `input ${field} was removed`;
    if (before === "missing") return `input ${field} appeared`;
    if (before === CHANGED_WHILE_RUNNING) return `input ${field} changed while the last run read it`;
    return `input ${field} changed${describeSubfields(before, after)}`;
  }
  if (section === "upstream") return after === undefined ? `upstream ${field} removed` : `upstream ${field} output changed`;
  if (section === "generated file") return before === undefined ? `would create ${field}` : `would change ${field}`;
  if (section === "tool") return `tool ${field} changed: ${short(before)} → ${short(after)}`;
  return `${section} ${field} changed: ${short(before)} → ${short(after)}`;
}

function describeSubfields(before: Json, after: Json): string {
  if (!before || !after || typeof before !== "object" || typeof after !== "object" || Array.isArray(before) || Array.isArray(after)) return "";
  // Trees record a hash per top-level entry, globs a hash per file: name the parts that differ.
  const a = ((before as Record<string, Json>).parts ?? before) as Record<string, Json>;
  const b = ((after as Record<string, Json>).parts ?? after) as Record<string, Json>;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return "";
  const names = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter(
    (n) => n !== "hash" && n !== "entries" && canonicalJson(a[n] ?? null) !== canonicalJson(b[n] ?? null),
  );
  if (names.length === 0) return "";
  const shown = names.sort().slice(0, 5).join(", ");
  return ` (${shown}${names.length > 5 ? `, +${names.length - 5} more` : ""})`;
}

export function explainChange(change: KeyChange): string {
  return `${change.section} ${change.field}:\n    recorded: ${short(change.before)}\n    now:      ${short(change.after)}`;
}
