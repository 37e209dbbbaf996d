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

const REGEX_SPECIAL = /[\\^$.|?*+()[\]{}/]/;

/**
 * Glob text from `at` to the end (or, inside braces, to the `,` or `}` that ends the alternative) as regex
 * source. `*` any run of characters, `?` one character, `{a,b}` alternatives (nested too), `\` escapes the next
 * character; everything else is literal. Braces without a top-level comma, or never closed, are literal, as in bash.
 */
function globSource(p: string, at: number, inBraces: boolean): { src: string; end: number } {
  let src = '';
  let i = at;
  while (i < p.length) {
    const c = p.charAt(i);
    if (inBraces && (c === ',' || c === '}')) break;
    if (c === '*') {
      src += '[^]*';
      i++;
    } else if (c === '?') {
      src += '[^]';
      i++;
    } else if (c === '\\' && i + 1 < p.length) {
      const next = String.fromCodePoint(p.codePointAt(i + 1) ?? 0);
      src += REGEX_SPECIAL.test(next) ? `\\${next}` : next;
      i += 1 + next.length;
    } else if (c === '{') {
      const alts: string[] = [];
      let j = i + 1;
      let closed = false;
      for (;;) {
        const part = globSource(p, j, true);
        alts.push(part.src);
        if (part.end >= p.length) break;
        j = part.end + 1;
        if (p.charAt(part.end) === '}') {
          closed = true;
          break;
        }
      }
      if (closed && alts.length > 1) {
        src += `(?:${alts.join('|')})`;
        i = j;
      } else {
        src += '\\{';
        i++;
      }
    } else {
      src += REGEX_SPECIAL.test(c) ? `\\${c}` : c;
      i++;
    }
  }
  return { src, end: i };
}

/**
 * A compiled glob over names (event types, property keys). Names are not file paths: `*` also crosses `/`
 * and newlines, `?` is any one character (a whole emoji too), `{a,b}` alternatives, `\` escapes; brackets,
 * parentheses, `|`, `+`, `!`, `@` are literal, because names such as `[Amplitude] Start Session` and
 * `Button Click (legacy)` are common and a file-path glob library read `* (legacy)` as a regex group that
 * never matched them. A name equal to the pattern always matches, whatever its characters.
 */
export function compileNameGlob(pattern: string): (name: string) => boolean {
  if (!/[*?{\\]/.test(pattern)) return (name) => name === pattern;
  const re = new RegExp(`^(?:${globSource(pattern, 0, false).src})$`, 'u');
  return (name) => name === pattern || re.test(name);
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
