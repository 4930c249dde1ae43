/**
 * Static files of the web page (the `vite build` output) served by control (`--web DIR`):
 * `/` → index.html, `/admin` and `/admin/` → admin.html, other paths → the file under DIR.
 * Paths with `..`, `.` or dot-file segments, encoded slashes or NUL are refused, and the
 * resolved real path must stay under DIR (symlinks included).
 */
import { createReadStream } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join, sep } from 'node:path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.json': 'application/json',
  '.map': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
  '.webmanifest': 'application/manifest+json',
  '.wasm': 'application/wasm',
};

/** The file a request path names, relative to the root, or undefined when it is refused. */
export function staticPath(rawPath: string): string | undefined {
  if (rawPath === '/' || rawPath === '') return 'index.html';
  if (rawPath === '/admin' || rawPath === '/admin/') return 'admin.html';
  if (!rawPath.startsWith('/')) return undefined;
  const segs: string[] = [];
  for (const raw of rawPath.slice(1).split('/')) {
    let s: string;
    try {
      s = decodeURIComponent(raw);
    } catch {
      return undefined;
    }
    if (s === '' || s.startsWith('.') || s.includes('/') || s.includes('\\') || s.includes('\0')) return undefined;
    segs.push(s);
  }
  return segs.join('/');
}

const realRoots = new Map<string, string>();

/** The web root with symlinks resolved, once per root (not per request). */
async function realRootOf(root: string): Promise<string> {
  let r = realRoots.get(root);
  if (r === undefined) {
    r = await realpath(root);
    realRoots.set(root, r);
  }
  return r;
}

/** Serves a GET/HEAD for a static file; returns false (nothing written) when there is none. */
export async function serveStatic(root: string, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  const rel = staticPath((req.url ?? '/').split('?')[0]!.split('#')[0]!);
  if (rel === undefined) return false;
  let realRoot: string;
  let file: string;
  try {
    realRoot = await realRootOf(root);
    file = await realpath(join(realRoot, rel));
  } catch {
    return false;
  }
  if (!file.startsWith(realRoot + sep)) return false;
  const st = await stat(file).catch(() => undefined);
  if (!st?.isFile()) return false;
  const ext = extname(file).toLowerCase();
  const type = TYPES[ext] ?? 'application/octet-stream';
  const cache = ext === '.html' ? 'no-cache' : rel.startsWith('assets/') ? 'public, max-age=31536000, immutable' : 'no-cache';
  res.writeHead(200, {
    'Content-Type': type,
    'Content-Length': String(st.size),
    'Cache-Control': cache,
    'X-Content-Type-Options': 'nosniff',
    ...(ext === '.html' ? { 'Referrer-Policy': 'no-referrer', 'X-Frame-Options': 'DENY' } : {}),
  });
  if (req.method === 'HEAD') {
    res.end();
    return true;
  }
  await new Promise<void>((resolve) => {
    const s = createReadStream(file);
    s.on('error', () => {
      res.destroy();
      resolve();
    });
    s.on('end', () => resolve());
    s.pipe(res);
  });
  return true;
}
