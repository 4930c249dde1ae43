/**
 * Debian's Chromium driven by Playwright (playwright-core: no browser download), optionally
 * inside a network namespace of a lab: Playwright starts `executablePath`, which may be a
 * wrapper script that runs `ip netns exec NS /usr/bin/chromium "$@"` (the DevTools pipe on fds
 * 3 and 4 is inherited through `ip netns exec`), so the page's WebSockets and fetches leave from
 * that namespace like any host's traffic.
 *
 * The flags are the ones this machine needs: no sandbox as root, no GPU, and no background
 * networking (Chromium's own connections would be refused by the closed network, many at a time).
 */
import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { labTempDir } from '../interop/lab/registry.ts';
import { nextSerial } from '../interop/lab/env.ts';

export const CHROMIUM = '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

/** Throws (tests never skip) when Debian's chromium is missing, naming the package. */
export function requireChromium(): void {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: the browser tests need Debian's chromium.\nInstall with: apt-get install -y --no-install-recommends chromium fonts-dejavu-core\n(see .ci/run)`);
  }
}

/** Launches headless Chromium, in network namespace `ns` when given. */
export async function launchChromium(ns?: string): Promise<Browser> {
  requireChromium();
  let executablePath = CHROMIUM;
  if (ns) {
    executablePath = join(labTempDir(), `${nextSerial()}-chromium-in-${ns}.sh`);
    writeFileSync(executablePath, `#!/bin/sh\nexec ip netns exec '${ns}' ${CHROMIUM} "$@"\n`);
    chmodSync(executablePath, 0o755);
  }
  return chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS, timeout: 60_000 });
}

/** A page that records console errors and page errors, for assertion messages. */
export async function newPage(ctx: BrowserContext): Promise<{ page: Page; log: string[] }> {
  const page = await ctx.newPage();
  const log: string[] = [];
  page.on('console', (m) => log.push(`[console.${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => log.push(`[pageerror] ${e.message}`));
  return { page, log };
}

/** The text of the xterm in `terminal` (its DOM renderer rows), lines trimmed. */
export async function terminalText(page: Page, selector = '[data-testid="terminal"]'): Promise<string> {
  return page.locator(`${selector} .xterm-rows`).first().innerText();
}
