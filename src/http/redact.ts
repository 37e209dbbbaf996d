/**
 * Secrets (API keys, secret keys, SDK keys) must never reach logs, errors, state or dead-letter files.
 * Config loading registers every secret here; the logger and the dead-letter writer pass text through
 * `redact` before it leaves the process.
 */
const secrets = new Set<string>();

export function registerSecret(value: string | undefined): void {
  // Very short values would redact ordinary words; real keys are long.
  if (value && value.length >= 6) secrets.add(value);
}

export function redact(text: string): string {
  if (secrets.size === 0) return text;
  let out = text;
  for (const s of secrets) {
    if (out.includes(s)) out = out.split(s).join('***');
  }
  return out;
}
