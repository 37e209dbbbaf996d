/**
 * A path or argument as a POSIX shell reads it back unchanged, for the commands that messages suggest: a
 * state.dir or a file name with a space or a quote would otherwise not paste. Left bare when every character is
 * one no shell treats specially, so the usual paths read as they are.
 */
export function shellArg(text: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(text)) return text;
  // Inside single quotes nothing is special but the quote itself: close, add an escaped quote, reopen.
  return `'${text.replace(/'/g, `'\\''`)}'`;
}
