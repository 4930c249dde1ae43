/**
 * src/browser/ runs in a Web Worker: it, and every src/ file it imports (transitively), must
 * use no Node API — no `node:` imports, no Node-only packages, no `Buffer`, no `process`.
 * The same holds for the worker (worker/), the page (src/ui/) and the admin console
 * (src/admin/), which also must import nothing from gateway/ (Node-only code, DESIGN invariant 5).
 */
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const BROWSER_DIR = join(ROOT, 'src/browser');
/** Packages the browser bundle may use. */
const ALLOWED_PACKAGES = [/^@noble\//, /^jsonc-parser$/];
/** …and the page and worker in addition (UI, comlink, the terminal). */
const PAGE_PACKAGES = [...ALLOWED_PACKAGES, /^preact(\/(hooks|jsx-runtime))?$/, /^comlink$/, /^@xterm\/(xterm|addon-fit)(\/css\/xterm\.css)?$/];

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

function walk(entries: string[], roots = ['src/'], packages = ALLOWED_PACKAGES): { files: Set<string>; problems: string[] } {
  const files = new Set<string>();
  const problems: string[] = [];
  const todo = [...entries];
  while (todo.length) {
    const f = todo.pop()!;
    if (files.has(f)) continue;
    files.add(f);
    const rel = relative(ROOT, f);
    if (!roots.some((r) => rel.startsWith(r))) problems.push(`${rel}: outside ${roots.join(', ')}`);
    if (f.endsWith('.css')) continue;
    const code = stripComments(readFileSync(f, 'utf8'));
    for (const spec of importsOf(code)) {
      if (spec.startsWith('.')) {
        todo.push(resolve(dirname(f), spec));
      } else if (spec.startsWith('node:')) {
        problems.push(`${rel}: imports ${spec}`);
      } else if (!packages.some((re) => re.test(spec))) {
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

/** Every .ts/.tsx file under `dir` (relative to the root), recursively. */
function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((d) => d.isFile() && /\.tsx?$/.test(d.name))
    .map((d) => join(d.parentPath, d.name));
}

describe('the worker and the page are browser-safe', () => {
  const worker = sources('worker');
  const ui = [...sources('src/ui'), ...sources('src/admin')];

  it('has the worker entry, its API, the page entry and the admin console entry', () => {
    const rel = [...worker, ...ui].map((e) => relative(ROOT, e));
    expect(rel).toEqual(expect.arrayContaining(['worker/engine-worker.ts', 'worker/api.ts', 'worker/tcp-duplex.ts', 'worker/store.ts', 'src/ui/main.tsx', 'src/admin/main.tsx', 'src/admin/api.ts']));
  });

  it('imports nothing from Node or gateway/, directly or through what they import', () => {
    const { files, problems } = walk([...worker, ...ui], ['src/', 'worker/'], PAGE_PACKAGES);
    expect(files.size).toBeGreaterThan(worker.length + ui.length);
    // The engine, the SSH client and the noble backend are in the worker's graph.
    const rel = [...files].map((f) => relative(ROOT, f));
    expect(rel).toEqual(expect.arrayContaining(['src/engine/engine.ts', 'src/ssh/client.ts', 'src/crypto/noble.ts', 'src/browser/platform.ts']));
    expect(problems).toEqual([]);
  });

  it('the checker flags a file in gateway/ and its node: imports', () => {
    const { problems } = walk([join(ROOT, 'gateway/src/node/state.ts')], ['src/', 'worker/'], PAGE_PACKAGES);
    expect(problems).toEqual(expect.arrayContaining(['gateway/src/node/state.ts: outside src/, worker/', 'gateway/src/node/state.ts: imports node:fs/promises']));
  });
});
