/**
 * src/browser/ runs in a Web Worker: it, and every src/ file it imports (transitively), must
 * use no Node API — no `node:` imports, no Node-only packages, no `Buffer`, no `process`.
 */
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const BROWSER_DIR = join(ROOT, 'src/browser');
/** Packages the browser bundle may use. */
const ALLOWED_PACKAGES = [/^@noble\//, /^jsonc-parser$/];

/** Source without comments and string contents other than import specifiers' (crude but enough). */
function stripComments(src: string): string {
  return src.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
}

function importsOf(src: string): string[] {
  const out: string[] = [];
  const re = /(?:^|[;\s])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s*['"]([^'"]+)['"]/gm;
  for (const m of src.matchAll(re)) out.push((m[1] ?? m[2] ?? m[3])!);
  return out;
}

function walk(entries: string[]): { files: Set<string>; problems: string[] } {
  const files = new Set<string>();
  const problems: string[] = [];
  const todo = [...entries];
  while (todo.length) {
    const f = todo.pop()!;
    if (files.has(f)) continue;
    files.add(f);
    const rel = relative(ROOT, f);
    if (!rel.startsWith('src/')) problems.push(`${rel}: outside src/`);
    const code = stripComments(readFileSync(f, 'utf8'));
    for (const spec of importsOf(code)) {
      if (spec.startsWith('.')) {
        todo.push(resolve(dirname(f), spec));
      } else if (spec.startsWith('node:')) {
        problems.push(`${rel}: imports ${spec}`);
      } else if (!ALLOWED_PACKAGES.some((re) => re.test(spec))) {
        problems.push(`${rel}: imports package ${spec}`);
      }
    }
    if (/\bBuffer\b/.test(code)) problems.push(`${rel}: uses Buffer`);
    if (/\bprocess\./.test(code)) problems.push(`${rel}: uses process`);
    if (/\brequire\s*\(/.test(code)) problems.push(`${rel}: uses require`);
  }
  return { files, problems };
}

describe('src/browser is browser-safe', () => {
  const entries = readdirSync(BROWSER_DIR)
    .filter((n) => n.endsWith('.ts'))
    .map((n) => join(BROWSER_DIR, n));

  it('has the platform and the DERP WebSocket client', () => {
    expect(entries.map((e) => relative(ROOT, e)).sort()).toEqual(expect.arrayContaining(['src/browser/derp-ws.ts', 'src/browser/platform.ts']));
  });

  it('imports nothing from Node, directly or through the src/ files it uses (with the engine, netstack and noble backend it runs)', () => {
    const { files, problems } = walk([...entries, ...['src/engine/engine.ts', 'src/netstack/stack.ts', 'src/crypto/noble.ts'].map((p) => join(ROOT, p))]);
    expect(files.size).toBeGreaterThan(entries.length);
    expect(problems).toEqual([]);
  });

  it('the checker itself catches node: imports and Buffer', () => {
    expect(importsOf(`import { x } from 'node:fs';\nimport type { Y } from "../a.ts";\nexport * from './b.ts';`)).toEqual(['node:fs', '../a.ts', './b.ts']);
    expect(/\bBuffer\b/.test(stripComments('const b = Buffer.from([1]);'))).toBe(true);
    expect(/\bBuffer\b/.test(stripComments('// a Buffer in a comment'))).toBe(false);
  });
});
