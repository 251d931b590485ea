#!/usr/bin/env node
// Runs the TypeScript sources directly (jiti caches the transpiled modules).
import { createJiti } from "jiti";

const jiti = createJiti(import.meta.url, { moduleCache: true });
const { main } = await jiti.import("../src/cli.ts");
const code = await main(process.argv.slice(2));
process.exitCode = code;
