// Loading ltspfile.ts: type-checked (result cached by content), then imported with jiti, so
// users need no compile step.
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { writeFileAtomicSync } from "./atomic.ts";
import { hashString } from "./hash.ts";

/** The package's top directory (this file runs from src/ or, compiled, from dist/src/). */
export const PACKAGE_ROOT = ((): string => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json")) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
})();
export const VERSION: string = (JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as { version: string }).version;

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

export interface LoadedConfig<T> {
  path: string | undefined;
  config: T | undefined;
  /** Call once the config proved usable, to skip the type check until the file changes. */
  rememberTypeCheck(): void;
}

const MAX_TYPE_ERRORS = 10;

function contentHash(file: string): string {
  try {
    return hashString(readFileSync(file, "utf8"));
  } catch {
    return "missing";
  }
}

/** Files of the package itself: checked when it is built, not with every config. */
const ENGINE_DIRS = ["src", "tasks", "dist", "node_modules"].map((dir) => join(PACKAGE_ROOT, dir) + "/");

interface TypeCheckResult {
  errors: string[];
  /** Content hashes of the user's own files the config imports (besides the config itself). */
  imports: Record<string, string>;
}

/** Type-check the config and the user's files it imports; the engine's own types are trusted. */
async function typeCheck(path: string): Promise<TypeCheckResult> {
  const ts = (await import("typescript")).default;
  const options: import("typescript").CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    allowImportingTsExtensions: true,
    types: ["node"],
    typeRoots: [join(PACKAGE_ROOT, "node_modules", "@types")],
    baseUrl: PACKAGE_ROOT,
    paths: { "ltsp-make": [join(PACKAGE_ROOT, "src", "index.ts")] },
  };
  const program = ts.createProgram([path], options);
  const own = program
    .getSourceFiles()
    .filter((f) => f.fileName === path || (!program.isSourceFileDefaultLibrary(f) && !ENGINE_DIRS.some((dir) => f.fileName.startsWith(dir))));
  const diagnostics = [
    ...program.getOptionsDiagnostics(),
    ...program.getGlobalDiagnostics(),
    ...own.flatMap((f) => [...program.getSyntacticDiagnostics(f), ...program.getSemanticDiagnostics(f)]),
  ];
  const errors = diagnostics.map((d) => {
    const message = ts.flattenDiagnosticMessageText(d.messageText, "\n");
    if (!d.file || d.start === undefined) return message;
    const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
    return `${d.file.fileName}:${line + 1}:${character + 1}: ${message}`;
  });
  const imports = own.map((f) => f.fileName).filter((f) => f !== path);
  return { errors, imports: Object.fromEntries(imports.map((file) => [file, contentHash(file)])) };
}

/** What typecheck.json holds: the config's stamp and the content hash of each file it imports. */
interface TypeCheckRecord {
  ok?: string;
  imports?: Record<string, string>;
}

function stillChecked(record: TypeCheckRecord, stamp: string): boolean {
  return record.ok === stamp && Object.entries(record.imports ?? {}).every(([file, hash]) => contentHash(file) === hash);
}

function locate(error: unknown, path: string): string {
  const text = error instanceof Error ? `${error.message}\n${error.stack ?? ""}` : String(error);
  const match = new RegExp(`${path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:(\\d+)(?::(\\d+))?`).exec(text);
  return match ? `${path}:${match[1]}${match[2] ? `:${match[2]}` : ""}` : path;
}

/**
 * Load a config file. `required` is false for the default ./ltspfile.ts: without it, built-in
 * defaults apply. The type check result is cached in the state directory unless `readOnly`.
 */
export async function loadConfigFile<T>(file: string, required: boolean, stateDir: string, readOnly: boolean): Promise<LoadedConfig<T>> {
  const path = resolve(file);
  if (!existsSync(path)) {
    if (required) throw new ConfigError(`config file ${path} does not exist: check --config, or run without it for the built-in defaults`);
    return { path: undefined, config: undefined, rememberTypeCheck: () => {} };
  }
  const source = readFileSync(path, "utf8");
  const stamp = hashString(`${VERSION}\n${path}\n${source}`);
  const cachePath = join(stateDir, "typecheck.json");
  let cached: TypeCheckRecord;
  try {
    cached = JSON.parse(readFileSync(cachePath, "utf8")) as TypeCheckRecord;
  } catch {
    cached = {};
  }
  let checked: TypeCheckResult | undefined;
  if (!stillChecked(cached, stamp)) {
    checked = await typeCheck(path);
    if (checked.errors.length) {
      const { errors } = checked;
      const shown = errors.slice(0, MAX_TYPE_ERRORS).join("\n");
      const more = errors.length > MAX_TYPE_ERRORS ? `\n(${errors.length - MAX_TYPE_ERRORS} more)` : "";
      throw new ConfigError(`${path} does not type-check:\n${shown}${more}\nFix these lines; nothing was built.`);
    }
  }
  const rememberTypeCheck = () => {
    if (readOnly || !checked) return;
    const record: TypeCheckRecord = { ok: stamp, imports: checked.imports };
    try {
      mkdirSync(stateDir, { recursive: true });
      writeFileAtomicSync(cachePath, JSON.stringify(record));
    } catch {
      // an unwritable state directory is reported by the run itself
    }
  };
  const { createJiti } = await import("jiti");
  const jiti = createJiti(import.meta.url, {
    alias: { "ltsp-make": join(PACKAGE_ROOT, "src", "index.ts") },
    fsCache: join(PACKAGE_ROOT, "node_modules", ".cache", "jiti"),
    moduleCache: false,
  });
  let loaded: unknown;
  try {
    // Not `{ default: true }`: that hands back the whole module when it has no default export,
    // and a file exporting only other names would then be taken for an (empty) config.
    const module = await jiti.import<Record<string, unknown> | undefined>(path);
    loaded = module !== null && typeof module === "object" && "default" in module ? module.default : undefined;
  } catch (error) {
    const where = locate(error, path);
    const message = error instanceof Error ? error.message.split("\n")[0] : String(error);
    throw new ConfigError(`${where}: loading the config failed: ${message}`);
  }
  if (loaded === undefined || loaded === null || (typeof loaded !== "object" && typeof loaded !== "function")) {
    throw new ConfigError(`${path} must export its config as the default export: export default defineConfig({ ... })`);
  }
  return { path, config: loaded as T, rememberTypeCheck };
}
