// Holding dpkg's lock on a source tree while an image is built from it, so that apt or dpkg do not
// change the tree half-way. dpkg locks with fcntl (POSIX record locks), which belong to a process
// and cannot be taken from Node, so a small python3 helper takes them and stays alive holding
// them. The helper detaches from the command that starts it once the locks are held, and exits by
// itself when the process it watches (ours) is gone, so a killed run never leaves the tree locked.
import { accessSync, constants, existsSync, realpathSync } from "node:fs";
import { join } from "node:path";
import type { Exec } from "../../src/exec.ts";
import { stopHelper } from "./helper-process.ts";

/** Same order as apt and dpkg take them, so the two sides cannot deadlock. */
const LOCK_FILES = ["var/lib/dpkg/lock-frontend", "var/lib/dpkg/lock"];

// argv: watched PID, marker (ignored; makes the helper recognisable), lock files.
// The files are opened read-write without O_CREAT or O_TRUNC: neither content nor mtime change.
const HELPER = `
import fcntl, os, sys, time
watch, paths = int(sys.argv[1]), sys.argv[3:]
r, w = os.pipe()
if os.fork():
    os.close(w)
    for line in os.fdopen(r):
        sys.stdout.write(line)
        sys.stdout.flush()
        if line.startswith("locked "):
            sys.exit(0)
    sys.exit(1)
os.close(r)
null = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)
report = os.fdopen(w, "w", buffering=1)
def alive():
    try:
        os.kill(watch, 0)
        return True
    except ProcessLookupError:
        return False
held = []
try:
    for path in paths:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        said = False
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if not said:
                    report.write("waiting " + path + "\\n")
                    said = True
                if not alive():
                    os._exit(1)
                time.sleep(0.2)
        held.append(fd)
except OSError as error:
    report.write("error " + str(error) + "\\n")
    os._exit(1)
report.write("locked %d\\n" % os.getpid())
report.close()
while alive():
    time.sleep(0.5)
`;

export interface PackageLock {
  /** The helper holding the locks. */
  pid: number;
  paths: string[];
  /** Releases the locks (stops the helper). Idempotent. */
  release(): Promise<void>;
}

/**
 * Takes dpkg's locks in `root` and holds them until `release()`. Waits (with a message) while apt
 * or dpkg hold them. Returns undefined, with a warning, for trees without a writable dpkg lock.
 * `marker` is a string (the caller's work directory) put on the helper's command line.
 */
/**
 * Locks this process already holds, by source root: several images built from one source in the
 * same run share its lock instead of waiting for each other (which would wait forever).
 */
const heldHere = new Map<string, { lock: Promise<PackageLock | undefined>; users: number }>();

export async function lockPackageManager(
  root: string,
  options: { exec: Exec; log: (message: string) => void; marker: string },
): Promise<PackageLock | undefined> {
  const key = realpathSync(root);
  let shared = heldHere.get(key);
  if (!shared) {
    shared = { lock: takeLock(root, options), users: 0 };
    heldHere.set(key, shared);
    shared.lock.catch(() => heldHere.delete(key));
  }
  shared.users++;
  const entry = shared;
  const lock = await entry.lock;
  if (!lock) return undefined;
  let released = false;
  return {
    pid: lock.pid,
    paths: lock.paths,
    async release() {
      if (released) return;
      released = true;
      if (--entry.users === 0) {
        heldHere.delete(key);
        await lock.release();
      }
    },
  };
}

async function takeLock(
  root: string,
  { exec, log, marker }: { exec: Exec; log: (message: string) => void; marker: string },
): Promise<PackageLock | undefined> {
  const paths = LOCK_FILES.map((file) => join(root, file)).filter((path) => existsSync(path));
  if (!paths.some((path) => path.endsWith("/lock"))) {
    log(`warning: ${root} has no var/lib/dpkg/lock; nothing keeps a package manager from changing it during the build`);
    return undefined;
  }
  const writable = paths.filter((path) => {
    try {
      accessSync(path, constants.W_OK);
      return true;
    } catch {
      return false;
    }
  });
  if (writable.length < paths.length) {
    log(`warning: dpkg's lock in ${root} is not writable (read-only source?); building without locking it`);
    return undefined;
  }
  const { stdout } = await exec("python3", ["-S", "-E", "-c", HELPER, String(process.pid), marker, ...paths], {
    okExitCodes: [0, 1],
    onLine: (line, stream) => {
      if (stream === "stdout" && line.startsWith("waiting ")) {
        log(`Waiting for ${line.slice("waiting ".length)}: apt or dpkg is running in ${root} (Ctrl+C aborts)`);
      }
    },
  }).catch((error: unknown) => {
    throw new Error(
      `Could not start the helper holding dpkg's lock in ${root} (${error instanceof Error ? error.message : String(error)}). ` +
        `It needs python3: install it (apt-get install python3-minimal).`,
    );
  });
  const locked = /^locked (\d+)$/m.exec(stdout);
  const failed = /^error (.*)$/m.exec(stdout);
  if (!locked) throw new Error(`Could not take dpkg's lock in ${root}: ${failed?.[1] ?? "the lock helper ended early"}.`);
  const pid = Number(locked[1]);
  let released = false;
  return {
    pid,
    paths,
    async release() {
      if (released) return;
      await stopHelper(pid, { marker, graceMs: 200 });
      released = true;
    },
  };
}
