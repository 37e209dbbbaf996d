import { redact } from '../http/redact.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFormat = 'text' | 'json';
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface LoggerOptions {
  format: LogFormat;
  /** Lowest level printed. `--quiet` sets `warn`. */
  level: LogLevel;
  /** Where lines go; stderr by default (stdout carries only a command's result). */
  write?: (line: string) => void;
  /** Called before each line, e.g. to clear a progress bar. */
  beforeWrite?: () => void;
}

function textValue(v: unknown): string {
  if (typeof v === 'string') return /[\s"=]/.test(v) ? JSON.stringify(v) : v;
  return JSON.stringify(v);
}

/** Text on a TTY (`12:00:01Z info  message key=value`), JSON lines otherwise. Everything passes `redact`. */
export function createLogger(options: LoggerOptions): Logger {
  const write = options.write ?? ((line: string) => process.stderr.write(line));
  const min = RANK[options.level];
  const emit = (level: LogLevel, message: string, fields?: LogFields): void => {
    if (RANK[level] < min) return;
    let line: string;
    if (options.format === 'json') {
      // Time, level and message first; a field never replaces them.
      const record: Record<string, unknown> = { time: new Date().toISOString(), level, message };
      if (fields) for (const [k, v] of Object.entries(fields)) if (!(k in record)) record[k] = v;
      line = JSON.stringify(record);
    } else {
      // UTC, and says so: a bare 12:00:01 reads as local time, hours off the wall clock ("timestamps look shifted").
      const time = `${new Date().toISOString().slice(11, 19)}Z`;
      const extra = fields ? Object.entries(fields).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${textValue(v)}`).join(' ') : '';
      line = `${time} ${level.padEnd(5)} ${message}${extra ? ` ${extra}` : ''}`;
    }
    options.beforeWrite?.();
    write(`${redact(line)}\n`);
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}

/** A logger that keeps lines in memory: for tests and library use. */
export function createMemoryLogger(): Logger & { lines: { level: LogLevel; message: string; fields?: LogFields }[] } {
  const lines: { level: LogLevel; message: string; fields?: LogFields }[] = [];
  const push = (level: LogLevel) => (message: string, fields?: LogFields) => {
    lines.push(fields ? { level, message, fields } : { level, message });
  };
  return { lines, debug: push('debug'), info: push('info'), warn: push('warn'), error: push('error') };
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
