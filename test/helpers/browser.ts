// Headless Chromium for the e2e tests (TOOLCHAIN.md recipe): one persistent context per file on a fresh dir.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, type Cookie, chromium } from 'playwright-core';
import type { Test } from 'tap';

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Launches Chromium on a fresh profile; closing it and removing the profile are registered on `t`. */
export async function launchChromium(t: Test, executablePath: string): Promise<BrowserContext> {
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-chromium-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const ctx = await chromium.launchPersistentContext(dir, { executablePath, headless: true, args: ARGS });
  t.teardown(() => ctx.close());
  ctx.setDefaultTimeout(15_000);
  ctx.setDefaultNavigationTimeout(15_000);
  // Chromium fetches /favicon.ico on its own schedule; through a proxy that is an extra auth check (and
  // possibly a refresh) racing the test's own navigations. Answered in the browser, it never leaves.
  await ctx.route('**/favicon.ico', (route) => route.fulfill({ status: 404, body: '' }));
  return ctx;
}

/** The browser's gatehouse session cookies for `url` (`_oauth2_proxy` and its chunks), by name. */
export async function sessionCookies(ctx: BrowserContext, url: string): Promise<Map<string, Cookie>> {
  const all = await ctx.cookies(url);
  return new Map(
    all
      .filter((c) => /^_oauth2_proxy(?:_\d+)?$/.test(c.name))
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((c) => [c.name, c]),
  );
}

/** Set-Cookie lines of one response, one entry per header line as it arrived. */
export function setCookieLines(headers: ReadonlyArray<{ name: string; value: string }>): string[] {
  return headers.filter((h) => h.name.toLowerCase() === 'set-cookie').map((h) => h.value);
}
