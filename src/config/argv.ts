// Command-line parsing with pflag's rules: --name=value, --name value, single dash, bare booleans, CSV lists.

import { META_FLAGS, OPTION_LIST, type OptionDef } from './options.js';
import { closest } from './suggest.js';

/** What the command line asked for; `values` holds raw strings per config field (lists already split). */
export interface ParsedArgv {
  readonly help: boolean;
  readonly version: boolean;
  readonly configTest: boolean;
  readonly secret: boolean;
  readonly alpha: boolean;
  readonly configFile: string | undefined;
  readonly values: ReadonlyMap<string, string | readonly string[]>;
  readonly errors: readonly string[];
}

const BY_FLAG: ReadonlyMap<string, OptionDef> = new Map(OPTION_LIST.map((d) => [d.flag, d as OptionDef]));
const ALL_FLAG_NAMES: readonly string[] = [...BY_FLAG.keys(), ...META_FLAGS.map((m) => m.flag)];
const TRUE = new Set(['1', 't', 'T', 'TRUE', 'true', 'True']);
const FALSE = new Set(['0', 'f', 'F', 'FALSE', 'false', 'False']);

/** Go's strconv.ParseBool. */
export function parseBool(s: string): boolean | undefined {
  if (TRUE.has(s)) return true;
  if (FALSE.has(s)) return false;
  return undefined;
}

/** One CSV record, as pflag's StringSlice reads a flag value: `a,"b,c"` → [a, b,c]; '' → []. */
export function splitCsv(s: string): string[] {
  if (s === '') return [];
  const out: string[] = [];
  let i = 0;
  while (i <= s.length) {
    if (s[i] === '"') {
      let field = '';
      i++;
      while (i < s.length) {
        if (s[i] === '"') {
          if (s[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field += s[i];
        i++;
      }
      // Anything between a closing quote and the next comma is kept rather than refused.
      const comma = s.indexOf(',', i);
      field += comma === -1 ? s.slice(i) : s.slice(i, comma);
      out.push(field);
      if (comma === -1) break;
      i = comma + 1;
    } else {
      const comma = s.indexOf(',', i);
      out.push(comma === -1 ? s.slice(i) : s.slice(i, comma));
      if (comma === -1) break;
      i = comma + 1;
    }
  }
  return out;
}

function unknownFlag(name: string): string {
  const hint = closest(name, ALL_FLAG_NAMES);
  return `unknown flag: --${name}${hint ? ` (did you mean --${hint}?)` : ''}`;
}

/** Parses argv (without the program name) per COMPAT.md §8.1.2 and §8.1.4. Never throws. */
export function parseArgv(argv: readonly string[]): ParsedArgv {
  const values = new Map<string, string | readonly string[]>();
  const errors: string[] = [];
  const state = { help: false, version: false, configTest: false, alpha: false };
  let configFile: string | undefined;
  const secret = argv[0] === 'secret';
  for (let i = secret ? 1 : 0; i < argv.length; i++) {
    const tok = argv[i] as string;
    if (tok === '--') {
      for (const rest of argv.slice(i + 1)) errors.push(`unexpected argument "${rest}"`);
      break;
    }
    if (!tok.startsWith('-') || tok === '-') {
      errors.push(`unexpected argument "${tok}"`);
      continue;
    }
    const body = tok.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq === -1 ? body : body.slice(0, eq);
    const inline = eq === -1 ? undefined : body.slice(eq + 1);
    const takeValue = (): string | undefined => {
      if (inline !== undefined) return inline;
      if (i + 1 < argv.length) return argv[++i];
      errors.push(`flag needs an argument: --${name}`);
      return undefined;
    };
    const switchValue = (): boolean => {
      if (inline === undefined) return true;
      const b = parseBool(inline);
      if (b === undefined) errors.push(`--${name}: invalid boolean "${inline}" (expected true or false)`);
      return b ?? false;
    };
    switch (name) {
      case 'h':
      case 'help':
        state.help = switchValue();
        continue;
      case 'version':
        state.version = switchValue();
        continue;
      case 'config-test':
        state.configTest = switchValue();
        continue;
      case 'convert-config-to-alpha':
        state.alpha = true;
        continue;
      case 'alpha-config':
        takeValue();
        state.alpha = true;
        continue;
      case 'config':
        configFile = takeValue();
        continue;
    }
    const def = BY_FLAG.get(name);
    if (!def) {
      errors.push(unknownFlag(name));
      continue;
    }
    const value = def.kind === 'bool' ? (inline ?? 'true') : takeValue();
    if (value === undefined) continue;
    if (def.kind === 'list') {
      const prev = values.get(def.field);
      values.set(def.field, [...(Array.isArray(prev) ? prev : []), ...splitCsv(value)]);
    } else {
      values.set(def.field, value);
    }
  }
  return { ...state, secret, configFile, values, errors };
}
