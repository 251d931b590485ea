// Which build of the engine runs: the compiled dist/ (made by `npm run build`, which set-up runs)
// when it is newer than every source file; otherwise the TypeScript sources through jiti.
import { readdirSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

function newestSource(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith(".ts")) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

export function distIsCurrent() {
  try {
    const built = statSync(`${root}dist/.built`).mtimeMs;
    return newestSource(`${root}src`) <= built && newestSource(`${root}tasks`) <= built;
  } catch {
    return false;
  }
}

let compiled;
let jiti;

/** An engine module by its path without extension, e.g. "src/cli": dist/src/cli.js or src/cli.ts. */
export async function importEngine(rel) {
  compiled ??= distIsCurrent();
  if (compiled) return import(new URL(`../dist/${rel}.js`, import.meta.url).href);
  if (!jiti) {
    const { createJiti } = await import("jiti");
    jiti = createJiti(import.meta.url, { moduleCache: true });
  }
  return jiti.import(`../${rel}.ts`);
}
