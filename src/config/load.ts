// Loading the configuration: argv, env and TOML merged by precedence, typed, validated, frozen (COMPAT.md §8).
import { readFileSync } from 'node:fs';
import { parseArgv } from './argv.js';
import { renderHelp } from './help.js';
import {
  type Config,
  type ConfigField,
  configSchema,
  OPTION_LIST,
  OPTIONS,
  type OptionDef,
} from './options.js';
import { generateCookieSecret, maskSecret } from './secret.js';
import { coerce, envValues, tomlValues } from './sources.js';
import { checkConfig, type Problems } from './validate.js';

// The helpers other modules need at start-up, re-exported next to the loader.
export { parseDuration } from './duration.js';
export { parseListenAddress } from './listen.js';
export type { Config } from './options.js';
export { cookieSecretKey } from './secret.js';
export { staticUpstreamCode } from './upstream.js';

export type LoadOutcome =
  | { kind: 'run' | 'config-test'; config: Config; warnings: string[] }
  | { kind: 'help' | 'version' | 'secret'; text: string }
  | { kind: 'error'; errors: string[]; exitCode: 1 | 2 };

type Source = 'flag' | 'env' | 'file' | 'default';

interface Origin {
  readonly source: Source;
  /** The value as given (string, list or TOML value), for messages. */
  readonly raw: unknown;
}

function readVersion(): string {
  // src/config/ and dist/config/ are both two levels below package.json.
  try {
    const pkg: unknown = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
    const v = typeof pkg === 'object' && pkg !== null ? (pkg as { version?: unknown }).version : undefined;
    return typeof v === 'string' ? v : 'unknown';
  } catch {
    return 'unknown';
  }
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

function shown(d: OptionDef, value: unknown): string {
  if (d.secret) {
    if (Array.isArray(value)) return `[${value.map((v) => maskSecret(String(v))).join(', ')}]`;
    return maskSecret(String(value));
  }
  const s = JSON.stringify(value) ?? String(value);
  return s.length > 200 ? `${s.slice(0, 200)}…` : s;
}

function errorText(text: string, cause: unknown): string {
  return `${text} (${cause instanceof Error && 'code' in cause ? String(cause.code) : String(cause)})`;
}

/**
 * Loads and validates the configuration (COMPAT.md §8.1–§8.3): flags > `OAUTH2_PROXY_*` env vars > TOML
 * `--config` file > defaults, then the secret files, the zod schema and every cross-field check. All errors
 * are collected; each names the flag, the env var and the offending value (secrets masked). Never throws.
 * argv excludes the program name; `secret` as the first word prints a new cookie secret.
 */
export function loadConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): LoadOutcome {
  const args = parseArgv(argv);
  if (args.secret) return { kind: 'secret', text: `${generateCookieSecret()}\n` };
  if (args.help) return { kind: 'help', text: renderHelp() };
  if (args.version) return { kind: 'version', text: `gatehouse ${readVersion()}\n` };
  if (args.alpha) {
    return {
      kind: 'error',
      errors: [
        'alpha config is not supported by gatehouse: use flags, OAUTH2_PROXY_* env vars or a TOML --config file',
      ],
      exitCode: 1,
    };
  }
  const errors: string[] = [...args.errors];
  const warnings: string[] = [];

  let fileValues = new Map<string, unknown>();
  const configFile = args.configFile;
  if (configFile !== undefined) {
    try {
      const parsed = tomlValues(readFileSync(configFile, 'utf8'), configFile);
      fileValues = parsed.values;
      errors.push(...parsed.errors);
    } catch (e) {
      errors.push(errorText(`--config ${configFile}: cannot read the file`, e));
    }
  }
  const envVals = envValues(env);

  const candidate: Record<string, unknown> = {};
  const origins = new Map<string, Origin>();
  const where = (d: OptionDef, o: Origin): string =>
    o.source === 'flag'
      ? 'flag'
      : o.source === 'env'
        ? d.env
        : o.source === 'file'
          ? `${configFile}`
          : 'default';
  const describe = (d: OptionDef, message: string, value?: string | null): string => {
    const o = origins.get(d.field) ?? { source: 'default', raw: d.default };
    const head = `--${d.flag} / ${d.env}: ${message}`;
    if (value === null) return head;
    return `${head} (got ${shown(d, value === undefined ? o.raw : value)} from ${where(d, o)})`;
  };

  for (const d of OPTION_LIST as readonly OptionDef[]) {
    const origin: Origin = args.values.has(d.field)
      ? { source: 'flag', raw: args.values.get(d.field) }
      : envVals.has(d.field)
        ? { source: 'env', raw: envVals.get(d.field) }
        : fileValues.has(d.field)
          ? { source: 'file', raw: fileValues.get(d.field) }
          : { source: 'default', raw: d.default };
    origins.set(d.field, origin);
    if (origin.source === 'default') {
      candidate[d.field] = d.default;
      continue;
    }
    const c = coerce(d, origin.raw);
    if (c.ok) {
      candidate[d.field] = c.value;
    } else {
      errors.push(describe(d, c.error));
      candidate[d.field] = d.default;
    }
  }

  // Secret files are read once at start; an inline secret wins (COMPAT.md §3.2.1).
  if (candidate.cookieSecret === '' && candidate.cookieSecretFile !== '') {
    try {
      // Used verbatim: a trailing newline is part of the secret, as in oauth2-proxy.
      candidate.cookieSecret = readFileSync(String(candidate.cookieSecretFile), 'utf8');
    } catch (e) {
      errors.push(describe(OPTIONS.cookieSecretFile, errorText('cannot read the cookie secret file', e)));
    }
  }
  if (candidate.clientSecret === '' && candidate.clientSecretFile !== '') {
    try {
      const secret = readFileSync(String(candidate.clientSecretFile), 'utf8').trimEnd();
      if (secret === '') errors.push(describe(OPTIONS.clientSecretFile, 'the client secret file is empty'));
      candidate.clientSecret = secret;
    } catch (e) {
      errors.push(describe(OPTIONS.clientSecretFile, errorText('cannot read the client secret file', e)));
    }
  }

  const parsed = configSchema.safeParse(candidate);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const field = String(issue.path[0]);
      const d = (OPTIONS as unknown as Record<string, OptionDef | undefined>)[field];
      if (!d) {
        errors.push(issue.message);
        continue;
      }
      const index = issue.path[1];
      const item = typeof index === 'number' ? (candidate[field] as readonly unknown[])[index] : undefined;
      errors.push(describe(d, issue.message, item === undefined ? undefined : String(item)));
    }
  }

  const problems: Problems = {
    error: (field: ConfigField, message: string, value?: string | null) => {
      errors.push(describe(OPTIONS[field], message, value));
    },
    conflict: (fields: readonly ConfigField[], message: string) => {
      const names = fields.map((f) => `--${OPTIONS[f].flag} / ${OPTIONS[f].env}`).join(', ');
      errors.push(`${names}: ${message}`);
    },
    warn: (message: string) => {
      warnings.push(message);
    },
    isSet: (field: ConfigField) => origins.get(field)?.source !== 'default',
  };
  // Checks see the candidate even when the schema failed, so every problem is reported in one go.
  checkConfig(candidate as unknown as Config, problems);

  if (errors.length > 0 || !parsed.success) return { kind: 'error', errors, exitCode: 2 };
  return { kind: args.configTest ? 'config-test' : 'run', config: deepFreeze(parsed.data), warnings };
}
