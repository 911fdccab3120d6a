// Environment variables and the TOML file as raw values per config field, and their conversion to typed values.
import { parse as parseToml } from 'smol-toml';
import { parseBool } from './argv.js';
import { parseDuration } from './duration.js';
import { OPTION_LIST, type OptionDef } from './options.js';
import { closest } from './suggest.js';

const BY_KEY: ReadonlyMap<string, OptionDef> = new Map(OPTION_LIST.map((d) => [d.key, d as OptionDef]));

/**
 * `OAUTH2_PROXY_<UPPER TOML KEY>` values per field (COMPAT.md §8.1.3). Lists are comma-separated. Empty
 * variables count as unset, and unknown OAUTH2_PROXY_* variables are ignored.
 */
export function envValues(env: Readonly<Record<string, string | undefined>>): Map<string, string | string[]> {
  const out = new Map<string, string | string[]>();
  for (const d of OPTION_LIST) {
    const v = env[d.env];
    if (v === undefined || v === '') continue;
    out.set(d.field, d.kind === 'list' ? v.split(',') : v);
  }
  return out;
}

/** Top-level TOML values per field; unknown keys and syntax errors are reported (COMPAT.md §8.1.3). */
export function tomlValues(text: string, file: string): { values: Map<string, unknown>; errors: string[] } {
  const values = new Map<string, unknown>();
  const errors: string[] = [];
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text);
  } catch (e) {
    const why = e instanceof Error ? e.message.split('\n')[0] : String(e);
    return { values, errors: [`--config ${file}: invalid TOML: ${why}`] };
  }
  for (const [key, value] of Object.entries(doc)) {
    const def = BY_KEY.get(key);
    if (!def) {
      const hint = closest(key, BY_KEY.keys());
      errors.push(`--config ${file}: unknown key "${key}"${hint ? ` (did you mean ${hint}?)` : ''}`);
      continue;
    }
    values.set(def.field, value);
  }
  return { values, errors };
}

export type Coerced =
  | { ok: true; value: string | boolean | number | readonly string[] }
  | { ok: false; error: string };

/**
 * Turns a raw value into the option's typed value: strings from flags and env vars, native values from
 * TOML. Durations become milliseconds. Never throws.
 */
export function coerce(def: OptionDef, raw: unknown): Coerced {
  switch (def.kind) {
    case 'string':
      return typeof raw === 'string' ? { ok: true, value: raw } : { ok: false, error: 'expected a string' };
    case 'bool': {
      if (typeof raw === 'boolean') return { ok: true, value: raw };
      const b = typeof raw === 'string' ? parseBool(raw) : undefined;
      return b === undefined
        ? { ok: false, error: 'expected a boolean (true or false)' }
        : { ok: true, value: b };
    }
    case 'int': {
      if (typeof raw === 'number' && Number.isSafeInteger(raw)) return { ok: true, value: raw };
      if (typeof raw === 'string' && /^[+-]?\d{1,15}$/.test(raw)) return { ok: true, value: Number(raw) };
      return { ok: false, error: 'expected an integer' };
    }
    case 'duration': {
      const ms = typeof raw === 'string' ? parseDuration(raw) : new Error('');
      return ms instanceof Error
        ? { ok: false, error: 'expected a duration such as 168h, 1h30m, 15m, 90s, 500ms or 0' }
        : { ok: true, value: ms };
    }
    case 'list': {
      if (typeof raw === 'string') return { ok: true, value: raw.split(',') };
      if (Array.isArray(raw) && raw.every((x) => typeof x === 'string')) return { ok: true, value: raw };
      return { ok: false, error: 'expected a list of strings' };
    }
  }
}
