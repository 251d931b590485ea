// The key's text is built field by field for speed; it must stay the canonical JSON of the key.
import { beforeAll, describe, expect, it } from "vitest";
import { canonicalJson, initHash } from "../../src/hash.ts";
import { keyText, type KeyDoc } from "../../src/key.ts";

beforeAll(async () => {
  await initHash();
});

const base: KeyDoc = { kind: "squash", version: 2, params: {}, inputs: {}, env: {}, tools: {}, deps: {} };

const docs: KeyDoc[] = [
  base,
  {
    kind: "gen",
    version: 1,
    params: { zeta: [3, { b: 1, a: null }], alpha: "x\"y", "10": true, "9": 1.5, mid: { "2": 0, "1": 1, b: "", a: [] } },
    inputs: {
      "tree:/srv/ltsp/bookworm!abc": { parts: { usr: "1", etc: "2", "0": "3" }, hash: "h", entries: 3 },
      "file:/etc/passwd": "0123456789abcdef",
      probe: { failed: "no such host" },
      "glob:/x:*.conf": { "b.conf": "1", "a.conf": "2" },
    },
    env: { PATH: "/usr/bin", HOME: null, "1": "one" },
    tools: { unsquashfs: "4.5.1", mksquashfs: "4.5.1" },
    deps: { "kernel:b": "pending", "cleanup:a": "0011" },
    files: { "/etc/b": "1", "/etc/a": "2" },
  },
  { ...base, inputs: { "file:/x": "missing", "file:/y": "changed while the task ran" }, params: { list: ["é", "\u2028", 1e21, -0] } },
];

describe("keyText", () => {
  it("is the canonical JSON of the key, whatever the order fields were added in", () => {
    for (const doc of docs) expect(keyText(doc)).toBe(canonicalJson(doc));
  });

  it("changes with any field", () => {
    const doc = docs[1]!;
    const texts = new Set([
      keyText(doc),
      keyText({ ...doc, version: 2 }),
      keyText({ ...doc, params: { ...doc.params, alpha: "z" } }),
      keyText({ ...doc, env: { ...doc.env, HOME: "/root" } }),
      keyText({ ...doc, deps: { ...doc.deps, "kernel:b": "ffff" } }),
      keyText({ ...doc, files: undefined }),
    ]);
    expect(texts.size).toBe(6);
  });
});
