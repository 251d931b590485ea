// LTSP commands beside building: `ltsp-make revert NAME`.
import { basename, join } from "node:path";
import type { StampCache } from "../src/fingerprint/stamps.ts";
import { adoptOutputs } from "../src/outputs.ts";
import type { StateStore } from "../src/state/store.ts";
import type { Roots } from "../src/types.ts";
import { revertGeneration } from "./generations.ts";
import { validateImageName } from "./lib/image-names.ts";

export interface CommandSession {
  roots: Roots;
  state: StateStore;
  stamps: StampCache;
}

/** Point NAME.img back at the previous generation; the next build keeps it until the source changes. */
export function revertImage(name: string, session: CommandSession): string {
  validateImageName(name);
  const stable = join(session.roots.baseDir, "images", `${name}.img`);
  const target = revertGeneration(stable);
  const record = session.state.record(`squash:${name}`);
  const key = session.state.recordedKey(`squash:${name}`);
  if (record && key) session.state.markFinished(`squash:${name}`, adoptOutputs(record, session.stamps), key, 0);
  return `${basename(stable)} now points at ${basename(target)}; run ltsp-make to update its kernel in TFTP`;
}
