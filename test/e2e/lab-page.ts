/** The browser suites' shared start and end: a lab, a browser context in it and a page. */
import { afterAll, beforeAll } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { newPage } from './browser.ts';

export interface LabPage<L> {
  lab: L;
  ctx: BrowserContext;
  page: Page;
  /** The page's console, as newPage collects it. */
  log: string[];
}

/**
 * Registers beforeAll: `start()` the lab, open a context of `viewport` in its browser and a
 * page, and hand them to `opened`; and afterAll: close the context and destroy the lab.
 */
export function labPage<L extends { browser: Browser; destroy(): Promise<void> }>(start: () => Promise<L>, viewport: { width: number; height: number }, opened: (s: LabPage<L>) => void): void {
  let lab: L | undefined;
  let ctx: BrowserContext | undefined;
  beforeAll(async () => {
    lab = await start();
    ctx = await lab.browser.newContext({ viewport });
    opened({ lab, ctx, ...(await newPage(ctx)) });
  }, 300_000);

  afterAll(async () => {
    await ctx?.close().catch(() => {});
    await lab?.destroy();
  }, 60_000);
}
