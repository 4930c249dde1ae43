/** Polls `cond` every 25 ms until it holds; rejects after `ms` naming `what` (in-process tests). */
export async function waitUntil(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
