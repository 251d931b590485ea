// Natural version order compatible with GNU `sort -V` (coreutils' filevercmp), so that
// vmlinuz-6.1.0-10 sorts after vmlinuz-6.1.0-9.

function isDigit(code: number | undefined): boolean {
  return code !== undefined && code >= 48 && code <= 57;
}

function isAlpha(code: number): boolean {
  return (code >= 65 && code <= 90) || (code >= 97 && code <= 122);
}

/** Weight of a non-digit character: `~` before the end, the end before letters, letters before the rest. */
function order(text: string, index: number): number {
  const code = text.charCodeAt(index);
  if (isDigit(code)) return 0;
  if (isAlpha(code)) return code;
  if (code === 126) return -2; // ~
  return code + 256;
}

/** Debian-style comparison of alternating non-digit and digit runs, over the first `aLen`/`bLen` characters. */
function compareRuns(a: string, aLen: number, b: string, bLen: number): number {
  let i = 0;
  let j = 0;
  while (i < aLen || j < bLen) {
    let firstDiff = 0;
    while ((i < aLen && !isDigit(a.charCodeAt(i))) || (j < bLen && !isDigit(b.charCodeAt(j)))) {
      const aOrder = i < aLen ? order(a, i) : -1;
      const bOrder = j < bLen ? order(b, j) : -1;
      if (aOrder !== bOrder) return aOrder - bOrder;
      i++;
      j++;
    }
    while (i < aLen && a.charCodeAt(i) === 48) i++;
    while (j < bLen && b.charCodeAt(j) === 48) j++;
    while (i < aLen && j < bLen && isDigit(a.charCodeAt(i)) && isDigit(b.charCodeAt(j))) {
      if (!firstDiff) firstDiff = a.charCodeAt(i) - b.charCodeAt(j);
      i++;
      j++;
    }
    if (i < aLen && isDigit(a.charCodeAt(i))) return 1;
    if (j < bLen && isDigit(b.charCodeAt(j))) return -1;
    if (firstDiff) return firstDiff;
  }
  return 0;
}

function isSuffixChar(code: number | undefined): boolean {
  return code !== undefined && (isAlpha(code) || isDigit(code) || code === 126);
}

/**
 * Length of `text` without its file suffix: the trailing groups of a dot, a letter or `~`, then
 * letters, digits or `~` (e.g. `.tar.gz`). The first character never counts as suffix.
 */
function withoutSuffixLength(text: string): number {
  const n = text.length;
  let prefixLength = 0;
  let i = 0;
  for (;;) {
    if (i >= n) return prefixLength;
    i++;
    prefixLength = i;
    while (i + 1 < n && text.charCodeAt(i) === 46 && (isAlpha(text.charCodeAt(i + 1)) || text.charCodeAt(i + 1) === 126)) {
      for (i += 2; i < n && isSuffixChar(text.charCodeAt(i)); i++);
    }
  }
}

/** Compares like `sort -V` (ties broken by plain byte order, as sort does). */
export function compareVersions(first: string, second: string): number {
  if (first === second) return 0;
  // Compare UTF-8 bytes, as sort does.
  const a = Buffer.from(first).toString("latin1");
  const b = Buffer.from(second).toString("latin1");
  const sign = (n: number) => (n < 0 ? -1 : n > 0 ? 1 : 0);
  if (a === "") return -1;
  if (b === "") return 1;
  for (const special of [".", ".."]) {
    if (a === special) return -1;
    if (b === special) return 1;
  }
  const aHidden = a.startsWith(".");
  if (aHidden !== b.startsWith(".")) return aHidden ? -1 : 1;
  const byPrefix = compareRuns(a, withoutSuffixLength(a), b, withoutSuffixLength(b));
  if (byPrefix) return sign(byPrefix);
  const whole = compareRuns(a, a.length, b, b.length);
  if (whole) return sign(whole);
  return a < b ? -1 : 1;
}
