#!/usr/bin/env node
import { importEngine } from "./engine.js";

const cli = await importEngine("src/cli");
process.exitCode = await cli.main(process.argv.slice(2));
