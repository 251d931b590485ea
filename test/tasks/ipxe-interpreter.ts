// A small interpreter for the subset of iPXE script syntax the LTSP menu uses, following iPXE's
// own rules: lines split on whitespace with no quoting, "||" "&&" ";" end a command, a word
// starting with "#" starts a comment, ${name} and ${name:type} expand settings, a failing line
// without a handler ends the script. Unknown commands throw, so typos in a generated menu show.

export interface Machine {
  /** Boot NIC MAC, lower-case with colons. */
  mac: string;
  /** MAC of net0 (defaults to `mac`). */
  net0Mac?: string;
  platform?: "pcbios" | "efi";
  cpu64?: boolean;
  proxyDhcpServer?: string;
  nextServer?: string;
  rootPath?: string;
  /** The item the user picks in the menu; undefined lets the timeout pick the default. */
  pick?: string;
  /** The user presses Esc in the menu. */
  cancel?: boolean;
  /** Whether a file can be fetched (default: every file). */
  fetchable?: (uri: string) => boolean;
}

export interface MenuItem {
  label?: string;
  text: string;
  key?: string;
  gap: boolean;
}

export interface RunResult {
  /** How the script ended. */
  outcome: "boot" | "shell" | "sanboot" | "exit" | "end" | "error";
  kernel?: { uri: string; args: string };
  initrds: string[];
  menu?: { title: string; items: MenuItem[]; timeout?: string; default?: string };
  /** Lines printed with echo. */
  echoed: string[];
  settings: Map<string, string>;
  /** The line that failed, for outcome "error". */
  failedLine?: string;
}

class Stop extends Error {
  constructor(readonly outcome: RunResult["outcome"]) {
    super(outcome);
  }
}

export function runIpxeScript(script: string, machine: Machine): RunResult {
  if (!script.startsWith("#!ipxe\n")) throw new Error("script does not start with #!ipxe");
  const lines = script.replace(/\\\n/g, "").split("\n");
  const labels = new Map<string, number>();
  lines.forEach((line, i) => {
    if (line.startsWith(":")) {
      const label = line.slice(1);
      if (labels.has(label)) throw new Error(`duplicate label :${label}`);
      labels.set(label, i);
    }
  });
  const settings = new Map<string, string>();
  const result: RunResult = { outcome: "end", initrds: [], echoed: [], settings };
  const fetchable = machine.fetchable ?? (() => true);
  const builtin = (name: string): string | undefined => {
    const net0 = machine.net0Mac ?? machine.mac;
    switch (name) {
      case "mac":
        return machine.mac;
      case "mac:hexhyp":
        return machine.mac.replaceAll(":", "-");
      case "net0/mac":
        return net0;
      case "net0/mac:hexhyp":
        return net0.replaceAll(":", "-");
      case "platform":
        return machine.platform ?? "pcbios";
      case "proxydhcp/dhcp-server":
        return machine.proxyDhcpServer ?? "";
      case "next-server":
        return machine.nextServer ?? "";
      case "root-path":
        return machine.rootPath ?? "";
      default:
        return undefined;
    }
  };
  const expand = (word: string): string =>
    word.replace(/\$\{([^}]*)\}/g, (_, name: string) => builtin(name) ?? settings.get(name) ?? "");

  let pc = 0;
  let jumped = false;
  let collecting: NonNullable<RunResult["menu"]> | undefined;

  const exec = (argv: string[]): number => {
    const [command, ...args] = argv;
    switch (command) {
      case undefined:
        return 0;
      case "set": {
        const [name, ...value] = args;
        if (!name) return 1;
        settings.set(name, value.join(" "));
        return 0;
      }
      case "clear":
        settings.delete(args[0] ?? "");
        return 0;
      case "isset":
        if (args.length !== 1) throw new Error(`isset takes one argument: ${argv.join(" ")}`);
        return args[0] !== "" ? 0 : 1;
      case "iseq":
        if (args.length !== 2) throw new Error(`iseq takes two arguments: ${argv.join(" ")}`);
        if (args[0]?.startsWith("-")) return 1; // iPXE's getopt rejects it as an unknown option
        return args[0] === args[1] ? 0 : 1;
      case "cpuid":
        return machine.cpu64 === false ? 1 : 0;
      case "goto": {
        const target = labels.get(args[0] ?? "");
        if (target === undefined) return 1;
        pc = target;
        jumped = true;
        return 0;
      }
      case "menu":
        if (args[0]?.startsWith("-")) return 1;
        collecting = { title: args.join(" "), items: [] };
        result.menu = collecting;
        return 0;
      case "item": {
        if (!collecting) throw new Error("item without menu");
        const item: MenuItem = { text: "", gap: false };
        const rest = [...args];
        while (rest[0]?.startsWith("--")) {
          const option = rest.shift();
          if (option === "--gap") item.gap = true;
          else if (option === "--key") item.key = rest.shift();
          else throw new Error(`unknown item option ${option}`);
        }
        if (!item.gap) item.label = rest.shift();
        item.text = rest.join(" ");
        collecting.items.push(item);
        return 0;
      }
      case "choose": {
        if (!collecting) throw new Error("choose without menu");
        const rest = [...args];
        while (rest[0]?.startsWith("--")) {
          const option = rest.shift();
          if (option === "--timeout") collecting.timeout = rest.shift();
          else if (option === "--default") collecting.default = rest.shift();
          else throw new Error(`unknown choose option ${option}`);
        }
        if (machine.cancel) return 1;
        const selectable = collecting.items.filter((item) => !item.gap && item.label);
        let chosen = machine.pick ?? collecting.default;
        if (!selectable.some((item) => item.label === chosen)) chosen = selectable[0]?.label;
        if (chosen === undefined) return 1;
        settings.set(rest[0] ?? "selected", chosen);
        return 0;
      }
      case "kernel": {
        const [uri, ...rest] = args;
        if (!uri || !fetchable(uri)) return 1;
        result.kernel = { uri, args: rest.join(" ") };
        result.initrds = [];
        return 0;
      }
      case "initrd":
        if (!args[0] || !fetchable(args[0])) return 1;
        result.initrds.push(args[0]);
        return 0;
      case "boot":
        if (!result.kernel) return 1;
        throw new Stop("boot");
      case "echo":
        result.echoed.push(args.join(" "));
        return 0;
      case "shell":
        throw new Stop("shell");
      case "config":
        return 0;
      case "sanboot":
        throw new Stop("sanboot");
      case "exit":
        throw new Stop("exit");
      default:
        throw new Error(`unknown iPXE command "${command}"`);
    }
  };

  try {
    for (let steps = 0; pc < lines.length; steps++) {
      if (steps > 10_000) throw new Error("the script loops");
      const line = lines[pc] ?? "";
      const current = pc;
      pc++;
      if (line.startsWith(":") || line.startsWith("#!")) continue;
      const tokens = line.split(/\s+/).filter((token) => token !== "");
      let rc = 0;
      let process = true;
      let i = 0;
      jumped = false;
      while (i <= tokens.length) {
        let end = i;
        let next: ((rc: number) => boolean) | undefined;
        let comment = false;
        for (; end < tokens.length; end++) {
          const token = tokens[end] ?? "";
          if (token.startsWith("#")) {
            comment = true;
            break;
          }
          if (token === "||") next = (r) => r !== 0;
          else if (token === "&&") next = (r) => r === 0;
          else if (token === ";") next = () => true;
          if (next) break;
        }
        if (process) rc = exec(tokens.slice(i, end).map(expand));
        if (jumped || comment || !next) break;
        process = next(rc);
        i = end + 1;
      }
      if (rc !== 0 && !jumped) {
        result.failedLine = lines[current];
        throw new Stop("error");
      }
    }
  } catch (error) {
    if (!(error instanceof Stop)) throw error;
    result.outcome = error.outcome;
  }
  return result;
}
