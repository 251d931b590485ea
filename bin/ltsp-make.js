#!/usr/bin/env node
// Runs the compiled engine (dist/, made by `npm run build`, which set-up runs) when it is newer
// than every source file; otherwise the TypeScript sources directly through jiti.
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

function distIsCurrent() {
  try {
    const built = statSync(`${root}dist/.built`).mtimeMs;
    return newestSource(`${root}src`) <= built && newestSource(`${root}tasks`) <= built;
  } catch {
    return false;
  }
}

let cli;
if (distIsCurrent()) {
  cli = await import("../dist/src/cli.js");
} else {
  const { createJiti } = await import("jiti");
  cli = await createJiti(import.meta.url, { moduleCache: true }).import("../src/cli.ts");
}
process.exitCode = await cli.main(process.argv.slice(2));
