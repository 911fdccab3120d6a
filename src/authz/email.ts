// The email validator: `--email-domain` rules plus the watched `--authenticated-emails-file` (COMPAT §5.1).
import { readFileSync, type Stats, statSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';

/** Options of {@link createEmailValidator}. */
export interface EmailValidatorOptions {
  readonly emailDomains: readonly string[];
  readonly authenticatedEmailsFile?: string;
  /** Called with a message (never an address) when a reload fails; the old set stays in use. */
  readonly onError?: (msg: string) => void;
  /** Called after every successful reload with the number of addresses now loaded. */
  readonly onReload?: (count: number) => void;
  /** How often the file is polled for changes (default 1000 ms). */
  readonly pollIntervalMs?: number;
}

/** A running email validator; `close()` stops watching the file. */
export interface EmailValidator {
  valid(email: string): boolean;
  close(): void;
}

/**
 * Parses the authenticated-emails file like Go's `encoding/csv` with `Comment='#'` and
 * `TrimLeadingSpace`: quoted fields, blank lines skipped, every record must have as many fields as the
 * first. Column 1 of each record is trimmed and lowercased (COMPAT §5.1.3). Returns an Error on bad CSV.
 */
export function parseAuthenticatedEmails(text: string): Set<string> | Error {
  const out = new Set<string>();
  const lines = text.replace(/\r\n/g, '\n').split('\n');
  let expected = -1;
  let lineNo = 0;
  while (lineNo < lines.length) {
    const startLine = lineNo + 1;
    let line = lines[lineNo++]!;
    if (line === '' || line.startsWith('#')) continue;
    const fields: string[] = [];
    let pos = 0;
    for (;;) {
      while (pos < line.length && (line[pos] === ' ' || line[pos] === '\t')) pos++;
      if (line[pos] === '"') {
        let value = '';
        pos++;
        for (;;) {
          const q = line.indexOf('"', pos);
          if (q === -1) {
            // A quoted field may span lines.
            if (lineNo >= lines.length)
              return new Error(`line ${startLine}: extraneous or missing " in field`);
            value += `${line.slice(pos)}\n`;
            line = lines[lineNo++]!;
            pos = 0;
            continue;
          }
          value += line.slice(pos, q);
          if (line[q + 1] === '"') {
            value += '"';
            pos = q + 2;
            continue;
          }
          pos = q + 1;
          break;
        }
        if (pos < line.length && line[pos] !== ',') {
          return new Error(`line ${startLine}: extraneous or missing " in quoted field`);
        }
        fields.push(value);
      } else {
        const comma = line.indexOf(',', pos);
        const value = comma === -1 ? line.slice(pos) : line.slice(pos, comma);
        if (value.includes('"')) return new Error(`line ${startLine}: bare " in non-quoted field`);
        fields.push(value);
        pos = comma === -1 ? line.length : comma;
      }
      if (pos >= line.length) break;
      pos++; // the comma
      if (pos === line.length) {
        fields.push('');
        break;
      }
    }
    if (expected === -1) expected = fields.length;
    else if (fields.length !== expected) return new Error(`line ${startLine}: wrong number of fields`);
    out.add(fields[0]!.trim().toLowerCase());
  }
  return out;
}

/** Exactly one `@` and the domain rules of COMPAT §5.1.2 (entries are already lowercase). */
function matchesDomain(email: string, domains: readonly string[]): boolean {
  const at = email.indexOf('@');
  if (at === -1 || email.indexOf('@', at + 1) !== -1) return false;
  const domain = email.slice(at + 1);
  for (const d of domains) {
    if (email.endsWith(`@${d}`)) return true;
    if (d.startsWith('.') && domain.endsWith(d)) return true;
    if (d.startsWith('*.') && domain.endsWith(d.slice(1))) return true;
  }
  return false;
}

/**
 * Creates the email validator of COMPAT §5.1.2: the empty email is invalid; emails and domain entries are
 * compared lowercased; `*` allows any non-empty email; otherwise the email needs exactly one `@`
 * (GHSA-c5c4-8r6x-56w3) and must end with `@d`, or have a domain part ending with `.d`-style entries
 * (subdomains only), or be listed in the authenticated-emails file (§5.1.3). The file is polled and
 * swapped atomically on change; a bad reload keeps the previous set. A missing or unparsable file at
 * creation throws (a start-up error). Empty domain entries are ignored (closed: Go would accept `x@`).
 */
export function createEmailValidator(opts: EmailValidatorOptions): EmailValidator {
  const allowAll = opts.emailDomains.includes('*');
  const domains = Object.freeze(
    opts.emailDomains.filter((d) => d !== '' && d !== '*').map((d) => d.toLowerCase()),
  );
  const file = opts.authenticatedEmailsFile;
  const onError = opts.onError ?? (() => {});

  // The set is swapped as a whole, so a request sees either the old or the new file, never a mix.
  let users: ReadonlySet<string> = new Set<string>();
  let closed = false;
  let stopWatching = (): void => {};

  if (file !== undefined && file !== '') {
    // The stat is taken BEFORE reading, so a change racing the read is seen by the next poll.
    let loaded: Stats = statSync(file);
    const initial = parseAuthenticatedEmails(readFileSync(file, 'utf8'));
    if (initial instanceof Error) throw new Error(`authenticated-emails-file ${file}: ${initial.message}`);
    users = initial;
    let busy = false;
    let missing = false;
    const check = async (): Promise<void> => {
      if (busy || closed) return;
      busy = true;
      try {
        let st: Stats;
        let text: string;
        try {
          st = await stat(file);
          if (st.mtimeMs === loaded.mtimeMs && st.ino === loaded.ino && st.size === loaded.size) return;
          text = await readFile(file, 'utf8');
        } catch (e) {
          // Report a vanished file once, not on every poll; the old set stays in force.
          if (!missing)
            onError(
              `authenticated-emails-file ${file} unreadable: ${(e as NodeJS.ErrnoException).code ?? e}`,
            );
          missing = true;
          return;
        }
        missing = false;
        loaded = st;
        if (closed) return;
        const next = parseAuthenticatedEmails(text);
        if (next instanceof Error) {
          onError(`authenticated-emails-file ${file} not reloaded: ${next.message}`);
          return;
        }
        users = next;
        opts.onReload?.(next.size);
      } finally {
        busy = false;
      }
    };
    // Polling (not inotify) survives editors and config tools that replace the file by rename.
    const timer = setInterval(() => void check(), opts.pollIntervalMs ?? 1000);
    timer.unref();
    stopWatching = () => clearInterval(timer);
  }

  return {
    valid(email: string): boolean {
      if (typeof email !== 'string' || email === '') return false;
      if (allowAll) return true;
      const lower = email.toLowerCase();
      return matchesDomain(lower, domains) || users.has(lower);
    },
    close(): void {
      if (closed) return;
      closed = true;
      stopWatching();
    },
  };
}
