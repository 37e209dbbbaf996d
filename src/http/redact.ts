/**
 * Secrets (API keys, secret keys, SDK keys) must never reach logs, errors, state or dead-letter files.
 * Config loading registers every secret here, and the Export client its Basic credentials; the logger, the
 * dead-letter writer and the CLI's messages pass text through `redact` before it leaves the process. Text
 * that is cut short (a response body in a message) is redacted before the cut, or a key's first half would
 * go through.
 */

/** Every registered secret in every form it can take in text, longest first: a secret holding another is masked whole. */
let forms: string[] = [];

/** A secret as it can appear in text: as it is, escaped once or twice in JSON (a body inside a JSON message), URL-encoded. */
function formsOf(value: string): string[] {
  const json = JSON.stringify(value).slice(1, -1);
  return [value, json, JSON.stringify(json).slice(1, -1), encodeURIComponent(value)];
}

export function registerSecret(value: string | undefined): void {
  // Very short values would redact ordinary words; real keys are long.
  if (!value || value.length < 6) return;
  forms = [...new Set([...forms, ...formsOf(value)])].sort((a, b) => b.length - a.length);
}

/**
 * The user information of a URL in text (`https://user:password@proxy`): a proxy's credentials, short ones too. Up to
 * the last `@` before the host, as URL parsers read it: a password with a raw `@` in it is masked whole.
 */
const URL_USERINFO = /\b([a-z][-+.a-z0-9]*:\/\/)[^\s/?#"'<>]*@/gi;

export function redact(text: string): string {
  let out = text;
  for (const s of forms) {
    if (out.includes(s)) out = out.split(s).join('***');
  }
  return out.includes('@') ? out.replace(URL_USERINFO, '$1***@') : out;
}

/**
 * Text cut off at an arbitrary point (a body read only in part): its last word is dropped, as it may be the first
 * part of a key, which `redact` would not recognise.
 */
export function dropCutWord(text: string): string {
  return text.replace(/[^\s"',;:{}[\]()<>]+$/, '');
}
