/**
 * Dot paths into an exported Amplitude row (`user_id`, `event_properties.revenue`, `event_properties.*`),
 * compiled once per run into closures so that the per-event work is plain property reads.
 */
export type Getter = (root: unknown) => unknown;

/** Property names inherited from Object.prototype: reading them needs an own-property check. */
function inherited(seg: string): boolean {
  return seg in Object.prototype;
}

function ownValue(obj: unknown, key: string, checkOwn: boolean): unknown {
  if (typeof obj !== 'object' || obj === null) return undefined;
  if (checkOwn && !Object.prototype.hasOwnProperty.call(obj, key)) return undefined;
  return (obj as Record<string, unknown>)[key];
}

/** Splits a dot path; throws (caller turns it into a config problem) on empty segments. */
export function splitPath(path: string): string[] {
  const segments = path.split('.');
  if (segments.some((s) => s.length === 0)) throw new Error(`"${path}" is not a valid dot path (empty segment)`);
  return segments;
}

/**
 * Compiles `a.b.c` into a getter. Keys that themselves contain dots (Amplitude allows `page.url` as an
 * event property name) are found too: when a segment is missing, the rest of the path is tried as one key.
 */
export function compilePath(path: string): Getter {
  const segs = splitPath(path);
  const own = segs.map(inherited);
  const rest = segs.map((_, i) => segs.slice(i).join('.'));
  const restOwn = rest.map(inherited);
  const n = segs.length;
  if (n === 1) {
    const s0 = segs[0] ?? '';
    const o0 = own[0] ?? false;
    return (root) => ownValue(root, s0, o0);
  }
  return (root) => {
    let cur: unknown = root;
    for (let i = 0; i < n; i++) {
      const next = ownValue(cur, segs[i] ?? '', own[i] ?? false);
      if (next === undefined && i < n - 1) return ownValue(cur, rest[i] ?? '', restOwn[i] ?? false);
      cur = next;
    }
    return cur;
  };
}

/** A parsed glob: a sequence of literal code points, `?`, `*` and `{a,b}` alternatives (each a sequence). */
type GlobNode = { t: 'lit'; cp: number } | { t: 'any' } | { t: 'star' } | { t: 'alt'; alts: GlobNode[][] };

/**
 * Parses glob text from `at` to the end (or, inside braces, to the `,` or `}` that ends the alternative).
 * `*` any run of characters, `?` one character, `{a,b}` alternatives (nested too), `\` escapes the next
 * character; everything else is literal. Braces without a top-level comma, or never closed, are literal, as in bash.
 * `memo` holds the alternatives parsed from each position: an unclosed `{` is read again as a literal, and
 * without it a run of unclosed braces (`{{{{...`) was parsed again and again, 2^n times.
 */
function parseGlob(p: string, at: number, inBraces: boolean, memo: Map<number, { nodes: GlobNode[]; end: number }>): { nodes: GlobNode[]; end: number } {
  if (inBraces) {
    const known = memo.get(at);
    if (known) return known;
  }
  const nodes: GlobNode[] = [];
  let i = at;
  while (i < p.length) {
    const c = p.charAt(i);
    if (inBraces && (c === ',' || c === '}')) break;
    if (c === '*') {
      // `**` is the same as `*`: one step, and no backtracking between the two.
      if (nodes[nodes.length - 1]?.t !== 'star') nodes.push({ t: 'star' });
      i++;
    } else if (c === '?') {
      nodes.push({ t: 'any' });
      i++;
    } else if (c === '\\' && i + 1 < p.length) {
      const cp = p.codePointAt(i + 1) ?? 0;
      nodes.push({ t: 'lit', cp });
      i += 1 + (cp > 0xffff ? 2 : 1);
    } else if (c === '{') {
      const alts: GlobNode[][] = [];
      let j = i + 1;
      let closed = false;
      for (;;) {
        const part = parseGlob(p, j, true, memo);
        alts.push(part.nodes);
        if (part.end >= p.length) break;
        j = part.end + 1;
        if (p.charAt(part.end) === '}') {
          closed = true;
          break;
        }
      }
      if (closed && alts.length > 1) {
        nodes.push({ t: 'alt', alts });
        i = j;
      } else {
        nodes.push({ t: 'lit', cp: 0x7b });
        i++;
      }
    } else {
      const cp = p.codePointAt(i) ?? 0;
      nodes.push({ t: 'lit', cp });
      i += cp > 0xffff ? 2 : 1;
    }
  }
  const out = { nodes, end: i };
  if (inBraces) memo.set(at, out);
  return out;
}

/** One step of an expanded glob: a literal code point, `?` (any one code point) or `*` (any run). */
type Step = Exclude<GlobNode, { t: 'alt' }>;

/** At most this many patterns from one glob's `{a,b}` alternatives (`{a,b}{c,d}` is 4): more is a config mistake. */
const MAX_EXPANSIONS = 1024;

/** The star/`?`/literal patterns a glob's alternatives spell (brace expansion, as in bash). */
function expand(nodes: GlobNode[], pattern: string): Step[][] {
  let out: Step[][] = [[]];
  for (const n of nodes) {
    if (n.t !== 'alt') {
      for (const seq of out) seq.push(n);
      continue;
    }
    const choices = n.alts.flatMap((alt) => expand(alt, pattern));
    if (out.length * choices.length > MAX_EXPANSIONS) {
      throw new Error(`the glob ${JSON.stringify(pattern)} spells more than ${MAX_EXPANSIONS} names with its {a,b} alternatives: list fewer`);
    }
    out = out.flatMap((seq) => choices.map((c) => [...seq, ...c]));
  }
  return out;
}

/**
 * Whether `name` matches `steps`, by code point: the classic wildcard match that, on a mismatch, lets only the
 * last `*` take one more character. Time is at most name length times pattern length, whatever the pattern; a
 * backtracking regex of several stars (`*a*a*a*b`) took seconds per name of a few hundred characters.
 */
function wildcardMatch(steps: Step[], name: string): boolean {
  let p = 0;
  let i = 0;
  let starAt = -1;
  let starFrom = 0;
  while (i < name.length) {
    const cp = name.codePointAt(i) as number;
    const width = cp > 0xffff ? 2 : 1;
    const step = steps[p];
    if (step !== undefined && (step.t === 'any' || (step.t === 'lit' && step.cp === cp))) {
      p++;
      i += width;
    } else if (step?.t === 'star') {
      starAt = p++;
      starFrom = i;
    } else if (starAt >= 0) {
      // The last star takes one more character, and the steps after it are tried from there.
      p = starAt + 1;
      starFrom += (name.codePointAt(starFrom) as number) > 0xffff ? 2 : 1;
      i = starFrom;
    } else {
      return false;
    }
  }
  while (steps[p]?.t === 'star') p++;
  return p === steps.length;
}

/**
 * A compiled glob over names (event types, property keys). Names are not file paths: `*` also crosses `/`
 * and newlines, `?` is any one character (a whole emoji too), `{a,b}` alternatives, `\` escapes; brackets,
 * parentheses, `|`, `+`, `!`, `@` are literal, because names such as `[Amplitude] Start Session` and
 * `Button Click (legacy)` are common and a file-path glob library read `* (legacy)` as a regex group that
 * never matched them. A name equal to the pattern always matches, whatever its characters. Throws for a glob
 * of more than MAX_EXPANSIONS alternatives.
 */
export function compileNameGlob(pattern: string): (name: string) => boolean {
  if (!/[*?{\\]/.test(pattern)) return (name) => name === pattern;
  const patterns = expand(parseGlob(pattern, 0, false, new Map()).nodes, pattern);
  // With at most one `*` per pattern a regex cannot backtrack far, and it is the fastest on the per-property-key
  // path (`utm_*`, `*_{id,key}`: 3-10 times faster than wildcardMatch); several stars take wildcardMatch.
  if (patterns.every((steps) => steps.filter((st) => st.t === 'star').length <= 1)) {
    const re = new RegExp(`^(?:${patterns.map(regexSource).join('|')})$`, 'u');
    return (name) => name === pattern || re.test(name);
  }
  return (name) => name === pattern || patterns.some((steps) => wildcardMatch(steps, name));
}

/** Regex source of one expanded pattern (`u` flag: `[^]` is one code point). */
function regexSource(steps: Step[]): string {
  return steps.map((st) => (st.t === 'star' ? '[^]*' : st.t === 'any' ? '[^]' : String.fromCodePoint(st.cp).replace(/[\\^$.|?*+()[\]{}/]/, '\\$&'))).join('');
}

/** Emits `(propertyKey, value)` pairs for one selector. */
export type Selector = (root: unknown, emit: (key: string, value: unknown) => void) => void;

/**
 * Compiles a property selector. Without wildcards, the value at the path is emitted under the full path
 * (`user_properties.plan`, `country`). With wildcard segments (`*` or a glob such as `utm_*`), every match
 * is emitted under the part of its path from the first wildcard on: `event_properties.*` emits `plan`,
 * `address`, ...; `user_properties.*.id` emits `org.id`. Objects are emitted as they are (the caller
 * flattens them).
 */
export function compileSelector(pattern: string): Selector {
  const segs = splitPath(pattern);
  const first = segs.findIndex((s) => /[*?{]/.test(s));
  if (first < 0) {
    const get = compilePath(pattern);
    return (root, emit) => {
      const v = get(root);
      if (v !== undefined) emit(pattern, v);
    };
  }
  const head = first === 0 ? undefined : compilePath(segs.slice(0, first).join('.'));
  const tail = segs.slice(first).map((s) => (s === '*' ? undefined : compileNameGlob(s)));
  const walk = (obj: unknown, level: number, prefix: string, emit: (key: string, value: unknown) => void): void => {
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return;
    const match = tail[level];
    const last = level === tail.length - 1;
    const rec = obj as Record<string, unknown>;
    for (const k of Object.keys(rec)) {
      if (match && !match(k)) continue;
      const key = prefix === '' ? k : `${prefix}.${k}`;
      const v = rec[k];
      if (last) {
        if (v !== undefined) emit(key, v);
      } else {
        walk(v, level + 1, key, emit);
      }
    }
  };
  return (root, emit) => walk(head ? head(root) : root, 0, '', emit);
}
