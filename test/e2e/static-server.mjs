// A static file server for the built page (vite build output) inside a lab namespace:
//   node static-server.mjs DIR HOST PORT
// Prints "static server listening on http://HOST:PORT" when ready. GET and HEAD only; paths are
// confined to DIR; unknown paths get index.html (the page is one document).
import { createReadStream, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join, normalize, sep } from 'node:path';

const [dir, host, port] = process.argv.slice(2);
if (!dir || !host || !port) {
  console.error('usage: static-server.mjs DIR HOST PORT');
  process.exit(2);
}
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml', '.json': 'application/json', '.wasm': 'application/wasm', '.ico': 'image/x-icon' };
const root = normalize(dir + sep);

const server = createServer((req, res) => {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405).end();
    return;
  }
  let path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
  let file = normalize(join(root, path));
  if (!file.startsWith(root)) {
    res.writeHead(403).end();
    return;
  }
  let st;
  try {
    st = statSync(file);
    if (st.isDirectory()) {
      file = join(file, 'index.html');
      st = statSync(file);
    }
  } catch {
    file = join(root, 'index.html');
    st = statSync(file);
  }
  res.writeHead(200, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream', 'Content-Length': st.size, 'Cache-Control': 'no-store' });
  if (req.method === 'HEAD') res.end();
  else createReadStream(file).pipe(res);
});
server.listen(Number(port), host, () => console.log(`static server listening on http://${host}:${port}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
