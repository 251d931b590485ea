// glibc's fnmatch(3) with FNM_PATHNAME | FNM_PERIOD | FNM_EXTMATCH, for one path component.
//
// mksquashfs -wildcards matches each component of an exclude pattern against one directory
// entry name with exactly these flags, so exclusion verdicts must follow glibc to the letter,
// quirks included: `!(java)` matches `.git` although FNM_PERIOD is set, `*(.)x` matches `.x`,
// a `*` never lets an extended pattern after it match an empty tail, an unterminated `[` is a
// literal, an unknown `[:class:]` fails the whole match. mksquashfs never calls setlocale(), so
// it matches in the C locale whatever the environment: characters are bytes (`?` matches one
// byte of "é"), ranges compare byte values, classes are ASCII. Names never contain "/" here,
// which keeps FNM_PATHNAME out of the picture.

type Chars = string;

const CLASS_NAME_MAX = 256;
const EXT_OPENERS = new Set(["?", "*", "+", "@", "!"]);
const SPECIAL = /[*?[\\]|[+@!]\(/;

// The C locale's character classes; bytes above 0x7f belong to none.
const CLASS_TESTS: Record<string, RegExp> = {
  alnum: /^[0-9A-Za-z]$/,
  alpha: /^[A-Za-z]$/,
  blank: /^[ \t]$/,
  cntrl: /^[\x00-\x1f\x7f]$/,
  digit: /^[0-9]$/,
  graph: /^[\x21-\x7e]$/,
  lower: /^[a-z]$/,
  print: /^[\x20-\x7e]$/,
  punct: /^[\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e]$/,
  space: /^[ \t\n\v\f\r]$/,
  upper: /^[A-Z]$/,
  xdigit: /^[0-9A-Fa-f]$/,
};

/** A string as its UTF-8 bytes, one character per byte. */
function bytes(text: string): string {
  return /^[\x00-\x7f]*$/.test(text) ? text : Buffer.from(text, "utf8").toString("latin1");
}

/** True if `name` (one path component) matches `pattern` (one pattern component). */
export function fnmatchComponent(pattern: string, name: string): boolean {
  return compileComponent(pattern)(name);
}

/** True if the pattern has no special characters: it matches only the identical name. */
export function isLiteralComponent(pattern: string): boolean {
  return !SPECIAL.test(pattern);
}

/** A compiled form for repeated use: literal patterns become a string comparison. */
export function compileComponent(pattern: string): (name: string) => boolean {
  if (isLiteralComponent(pattern)) return (name) => name === pattern;
  const p = bytes(pattern);
  return (name) => {
    const s = bytes(name);
    return matchFrom(p, 0, s, 0, s.length, true);
  };
}

/**
 * Match p[pi..] against s[si..send). `leadingPeriod` is true where a "." must be matched
 * explicitly (the start of the name).
 */
function matchFrom(p: Chars, pi: number, s: Chars, si: number, send: number, leadingPeriod: boolean): boolean {
  let nlp = leadingPeriod;
  while (pi < p.length) {
    const c = p[pi++] as string;
    switch (c) {
      case "?": {
        if (p[pi] === "(") {
          const r = extended("?", p, pi, s, si, send, nlp);
          if (r !== undefined) return r;
        }
        if (si === send || (s[si] === "." && nlp)) return false;
        break;
      }
      case "\\": {
        const lit = p[pi++];
        if (lit === undefined) return false;
        if (si === send || s[si] !== lit) return false;
        break;
      }
      case "*":
        return star(p, pi, s, si, send, nlp);
      case "[": {
        const r = bracket(p, pi, s, si, send, nlp);
        if (r === "literal") {
          if (si === send || s[si] !== "[") return false;
          break;
        }
        if (r === false) return false;
        pi = r;
        break;
      }
      case "+":
      case "@":
      case "!":
        if (p[pi] === "(") {
          const r = extended(c, p, pi, s, si, send, nlp);
          if (r !== undefined) return r;
        }
        if (si === send || s[si] !== c) return false;
        break;
      default:
        if (si === send || s[si] !== c) return false;
    }
    nlp = false;
    si++;
  }
  return si === send;
}

/** A `*` at p[pi-1]. */
function star(p: Chars, pi: number, s: Chars, si: number, send: number, nlp: boolean): boolean {
  if (p[pi] === "(") {
    const r = extended("*", p, pi, s, si, send, nlp);
    if (r !== undefined) return r;
  }
  if (si !== send && s[si] === "." && nlp) return false;
  // Collapse a run of `*` and `?`; each `?` takes one character, extended groups after them are skipped.
  let c = p[pi++];
  while (c === "?" || c === "*") {
    if (p[pi] === "(") {
      const end = groupEnd(p, pi);
      if (end !== pi) {
        pi = end;
        c = p[pi++];
        continue;
      }
    }
    if (c === "?") {
      if (si === send) return false;
      si++;
    }
    c = p[pi++];
  }
  if (c === undefined) return true;
  pi--;
  if (c === "[" || ((c === "@" || c === "+" || c === "!") && p[pi + 1] === "(")) {
    // The rest must start before the end of the name: glibc never tries an empty tail here.
    for (; si < send; si++, nlp = false) {
      if (matchFrom(p, pi, s, si, send, nlp)) return true;
    }
    return false;
  }
  const first = c === "\\" ? p[pi + 1] : c;
  for (; si < send; si++, nlp = false) {
    if (s[si] === first && matchFrom(p, pi, s, si, send, nlp)) return true;
  }
  return false;
}

/**
 * A bracket expression whose `[` is at p[pi-1], against s[si]. Returns the pattern index after
 * the closing `]` on a match, false on no match, "literal" when the `[` is unterminated.
 */
function bracket(p: Chars, pi: number, s: Chars, si: number, send: number, nlp: boolean): number | false | "literal" {
  if (si === send) return false;
  const ch = s[si] as string;
  if (ch === "." && nlp) return false;
  const negated = p[pi] === "!" || p[pi] === "^";
  if (negated) pi++;
  let c = p[pi++];
  let matched = false;
  for (;;) {
    let low: string | undefined;
    let symbol = false;
    if (c === "\\") {
      if (p[pi] === undefined) return false;
      low = p[pi++] as string;
    } else if (c === "[" && p[pi] === ":") {
      const start = pi;
      let name = "";
      let isClass = true;
      for (;;) {
        if (name.length === CLASS_NAME_MAX) return false;
        const k = p[++pi];
        if (k === ":" && p[pi + 1] === "]") {
          pi += 2;
          break;
        }
        if (k === undefined || k < "a" || k >= "z") {
          isClass = false;
          break;
        }
        name += k;
      }
      if (!isClass) {
        pi = start;
        low = "[";
      } else {
        const test = CLASS_TESTS[name];
        if (!test) return false;
        if (test.test(ch)) {
          matched = true;
          break;
        }
        c = p[pi++];
        if (c === "]") break;
        continue;
      }
    } else if (c === "[" && p[pi] === "=") {
      const start = pi;
      const eq = p[pi + 1];
      if (eq !== undefined && p[pi + 2] === "=" && p[pi + 3] === "]") {
        pi += 4;
        if (ch === eq) {
          matched = true;
          break;
        }
        c = p[pi++];
        if (c === "]") break;
        continue;
      }
      pi = start;
      low = "[";
    } else if (c === undefined) {
      return "literal";
    } else if (c === "[" && p[pi] === ".") {
      // A collating symbol: without collation rules only a single character is accepted.
      let j = pi + 1;
      while (!(p[j] === "." && p[j + 1] === "]")) {
        if (p[j] === undefined) return false;
        j++;
      }
      if (j - (pi + 1) !== 1) return false;
      low = p[pi + 1] as string;
      pi = j + 2;
      symbol = true;
    } else {
      low = c;
    }
    // A member or the start of a range (after a collating symbol, glibc does not exclude "-]").
    const isRange = p[pi] === "-" && p[pi + 1] !== undefined && (symbol || p[pi + 1] !== "]");
    if (!isRange && ch === low) {
      matched = true;
      break;
    }
    c = p[pi++];
    if (c === "-" && p[pi] !== "]") {
      let high = p[pi++];
      if (high === "[" && p[pi] === ".") {
        let j = pi + 1;
        while (!(p[j] === "." && p[j + 1] === "]")) {
          if (p[j] === undefined) return false;
          j++;
        }
        if (j - (pi + 1) !== 1) return false;
        high = p[pi + 1] as string;
        pi = j + 2;
      } else {
        if (high === "\\") high = p[pi++];
        if (high === undefined) return false;
      }
      if (cp(low) <= cp(ch) && cp(ch) <= cp(high)) {
        matched = true;
        break;
      }
      c = p[pi++];
    }
    if (c === "]") break;
  }
  if (!matched) return negated ? pi : false;
  // Skip the rest of a bracket that already matched.
  for (;;) {
    const k = p[pi++];
    if (k === "]") break;
    if (k === undefined) return false;
    if (k === "\\") {
      if (p[pi] === undefined) return false;
      pi++;
    } else if (k === "[" && p[pi] === ":") {
      const start = pi;
      let n = 0;
      for (;;) {
        const q = p[++pi];
        if (++n === CLASS_NAME_MAX) return false;
        if (p[pi] === ":" && p[pi + 1] === "]") break;
        if (q === undefined || q < "a" || q >= "z") {
          pi = start - 2;
          break;
        }
      }
      pi += 2;
    } else if (k === "[" && p[pi] === "=") {
      if (p[++pi] === undefined) return false;
      if (p[++pi] !== "=" || p[pi + 1] !== "]") return false;
      pi += 2;
    } else if (k === "[" && p[pi] === ".") {
      for (;;) {
        const q = p[++pi];
        if (q === undefined) return false;
        if (q === "." && p[pi + 1] === "]") break;
      }
      pi += 2;
    }
  }
  return negated ? false : pi;
}

function cp(ch: string): number {
  return ch.charCodeAt(0);
}

/** Where an extended group opening at p[open] ("(") ends: the index after its ")", or `open` if invalid. */
function groupEnd(p: Chars, open: number): number {
  let i = open;
  for (;;) {
    const k = p[++i];
    if (k === undefined) return open;
    if (k === "[") {
      if (p[++i] === "!" || p[i] === "^") i++;
      if (p[i] === "]") i++;
      while (p[i] !== "]") {
        if (p[i++] === undefined) return open;
      }
    } else if (EXT_OPENERS.has(k) && p[i + 1] === "(") {
      i = groupEnd(p, i + 1);
      if (p[i] === undefined) return open;
    } else if (k === ")") {
      return i + 1;
    }
  }
}

/**
 * An extended group `op(a|b|…)` whose "(" is at p[open]. Returns undefined when the group is
 * not well formed (the operator is then an ordinary character).
 */
function extended(op: string, p: Chars, open: number, s: Chars, si: number, send: number, nlp: boolean): boolean | undefined {
  const alternatives: Chars[] = [];
  let level = 0;
  let start = open + 1;
  let i = open + 1;
  for (; level >= 0; i++) {
    const k = p[i];
    if (k === undefined) return undefined;
    if (k === "[") {
      if (p[++i] === "!" || p[i] === "^") i++;
      if (p[i] === "]") i++;
      while (p[i] !== "]") {
        if (p[i++] === undefined) return undefined;
      }
    } else if (EXT_OPENERS.has(k) && p[i + 1] === "(") {
      level++;
    } else if (k === ")") {
      if (level-- === 0) alternatives.push(p.slice(start, i));
    } else if (k === "|" && level === 0) {
      alternatives.push(p.slice(start, i));
      start = i + 1;
    }
  }
  const rest = p.slice(i);
  const whole = p.slice(open - 1);
  const tailPeriod = (rs: number) => (rs === si ? nlp : false);
  switch (op) {
    case "*":
      if (matchFrom(rest, 0, s, si, send, nlp)) return true;
    // falls through
    case "+":
      for (const alt of alternatives) {
        for (let rs = si; rs <= send; rs++) {
          if (
            matchFrom(alt, 0, s, si, rs, nlp) &&
            (matchFrom(rest, 0, s, rs, send, tailPeriod(rs)) || (rs !== si && matchFrom(whole, 0, s, rs, send, tailPeriod(rs))))
          ) {
            return true;
          }
        }
      }
      return false;
    case "?":
      if (matchFrom(rest, 0, s, si, send, nlp)) return true;
    // falls through
    case "@":
      return alternatives.some((alt) => matchFrom(alt + rest, 0, s, si, send, nlp));
    case "!":
      for (let rs = si; rs <= send; rs++) {
        if (!alternatives.some((alt) => matchFrom(alt, 0, s, si, rs, nlp)) && matchFrom(rest, 0, s, rs, send, tailPeriod(rs))) {
          return true;
        }
      }
      return false;
    default:
      return undefined;
  }
}
