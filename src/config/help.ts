// --help text and the README flag table, both rendered from the option table.
import { formatDuration } from './duration.js';
import { HELP_GROUPS, META_FLAGS, OPTION_LIST, type OptionDef, type Support } from './options.js';

const TYPE_NAME = {
  string: 'string',
  bool: 'bool',
  int: 'int',
  duration: 'duration',
  list: 'strings',
} as const;

function defaultText(d: OptionDef): string {
  const v: unknown = d.default;
  if (d.kind === 'duration') return formatDuration(v as number);
  if (Array.isArray(v)) return v.join(',');
  return String(v);
}

/** True when pflag would not print the default (zero value). */
function isZero(d: OptionDef): boolean {
  const v: unknown = d.default;
  return (
    v === '' || v === false || (Array.isArray(v) && v.length === 0) || (d.kind === 'duration' && v === 0)
  );
}

function supportTag(support: Support, gatehouseOnly: boolean): string {
  const tags: string[] = [];
  if (gatehouseOnly) tags.push('[gatehouse-only]');
  if (support === 'warn') tags.push('[accepted, no effect: startup warning]');
  if (support === 'ignore') tags.push('[accepted, no effect]');
  if (support === 'reject') tags.push('[rejected]');
  return tags.join(' ');
}

/** `--help` output (COMPAT.md §8.2): options by help group with flag, type, env var and default. */
export function renderHelp(): string {
  const out: string[] = [
    'Usage: gatehouse [flags]',
    '       gatehouse secret    print a fresh cookie secret',
    '',
    'Every option can also be given as an environment variable OAUTH2_PROXY_<TOML KEY> or as a key of the',
    'TOML file named by --config. Precedence: flag > environment > file > default. Durations use Go syntax',
    '(168h, 1h30m, 90s, 500ms); list flags may be repeated and are also split on ",".',
    '',
    'general:',
  ];
  for (const m of META_FLAGS) {
    const name = `${m.short ? `-${m.short}, ` : ''}--${m.flag}${m.takesValue ? ' string' : ''}`;
    out.push(`  ${name}`, `        ${m.help} ${supportTag(m.support, false)}`.trimEnd());
  }
  for (const group of HELP_GROUPS) {
    out.push('', `${group}:`);
    for (const d of OPTION_LIST as readonly OptionDef[]) {
      if (d.group !== group) continue;
      const type = d.kind === 'bool' ? '' : ` ${TYPE_NAME[d.kind]}`;
      const dflt = isZero(d)
        ? ''
        : ` (default ${d.kind === 'string' ? `"${defaultText(d)}"` : defaultText(d)})`;
      const tags = supportTag(d.support, d.gatehouseOnly);
      out.push(`  --${d.flag}${type}`, `        ${d.help}${dflt}; env ${d.env}${tags ? ` ${tags}` : ''}`);
    }
  }
  return `${out.join('\n')}\n`;
}

const SUPPORT_WORDS: Readonly<Record<Support, string>> = {
  supported: 'supported',
  warn: 'accepted, warns (no effect)',
  ignore: 'accepted, ignored',
  reject: 'rejected',
};

function cell(s: string): string {
  return s === '' ? '' : `\`${s.replaceAll('|', '\\|')}\``;
}

/** The README flag table (flag | env var | TOML key | default | support) of the whole option table. */
export function renderFlagsMarkdown(): string {
  const rows = ['| flag | env var | TOML key | default | support |', '|---|---|---|---|---|'];
  for (const m of META_FLAGS) {
    rows.push(`| ${cell(`--${m.flag}`)} | – | – | | ${SUPPORT_WORDS[m.support]} |`);
  }
  for (const d of OPTION_LIST as readonly OptionDef[]) {
    const dflt =
      d.kind === 'string' && d.default === '' ? '""' : d.kind === 'list' && isZero(d) ? '[]' : defaultText(d);
    const support = `${SUPPORT_WORDS[d.support]}${d.gatehouseOnly ? ', gatehouse-only' : ''}`;
    rows.push(`| ${cell(`--${d.flag}`)} | ${cell(d.env)} | ${cell(d.key)} | ${cell(dflt)} | ${support} |`);
  }
  return `${rows.join('\n')}\n`;
}
