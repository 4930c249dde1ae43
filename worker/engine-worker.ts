/**
 * The browser node's Web Worker entry: the engine of src/ (WireGuard, disco, paths, netstack)
 * and the SSH client, exposed to the page with comlink as the API of worker/api.ts.
 */
import { exposeNode } from './node.ts';

exposeNode(self as unknown as Parameters<typeof exposeNode>[0]);
