/**
 * A `pierce control` per test with a SQLite store in a temporary folder: registers the
 * beforeEach/afterEach that make the folder and, after the test, close the test's nodes and
 * the server and remove the folder.
 */
import { afterEach, beforeEach } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startControl, type ControlServer, type ControlServerOptions } from '../../gateway/src/control/server.ts';
import { SqliteStore } from '../../gateway/src/store/sqlite.ts';
import { createApiKey } from '../../gateway/src/control/state.ts';
import { TestNode, type TestNodeOptions } from './control-node.ts';

export interface ControlFixtureOptions {
  /** What every start() passes to startControl (before its own options). */
  defaults?: Partial<ControlServerOptions>;
  /** Make an admin API key ("test") at a test's first start(): `apiKey`, `apiKeyId`, and api() uses it. */
  apiKey?: boolean;
}

export interface ApiReply {
  status: number;
  body: Record<string, any>;
  headers: Headers;
}

export class ControlFixture {
  /** This test's folder; the store is control.db in it (a restart reopens it). */
  dir = '';
  readonly nodes: TestNode[] = [];
  apiKey = '';
  apiKeyId = '';
  private running: ControlServer | undefined;

  constructor(prefix: string, private readonly o: ControlFixtureOptions = {}) {
    beforeEach(() => {
      this.dir = mkdtempSync(join(tmpdir(), prefix));
      this.apiKey = '';
      this.apiKeyId = '';
    });
    afterEach(async () => {
      for (const n of this.nodes.splice(0)) n.close();
      await this.stop();
      rmSync(this.dir, { recursive: true, force: true });
    });
  }

  /** The running server. */
  get server(): ControlServer {
    if (!this.running) throw new Error('control is not running (start() first)');
    return this.running;
  }

  start = async (extra: Partial<ControlServerOptions> = {}): Promise<ControlServer> => {
    this.running = await startControl({ store: new SqliteStore(join(this.dir, 'control.db')), ...this.o.defaults, ...extra });
    if (this.o.apiKey && !this.apiKey) {
      const k = await createApiKey(this.running.state.store, Date.now(), 'test');
      this.apiKey = k.key;
      this.apiKeyId = k.id;
    }
    return this.running;
  };

  /** Closes the server (if running); start() again is a restart on the same store. */
  stop = async (): Promise<void> => {
    const s = this.running;
    this.running = undefined;
    await s?.close();
  };

  /** A test node of this server, closed after the test. */
  node = (hostname: string, o: Partial<TestNodeOptions> = {}): TestNode => {
    const n = new TestNode({ url: this.server.url, hostname, ...o });
    this.nodes.push(n);
    return n;
  };

  /** An admin API call (JSON; a string body is sent as it is), with the fixture's API key unless `headers` say otherwise. */
  api = async (method: string, path: string, body?: unknown, headers: Record<string, string> = { Authorization: `Bearer ${this.apiKey}` }): Promise<ApiReply> => {
    const res = await fetch(`${this.server.url}/api/v1${path}`, {
      method,
      headers: { ...headers, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
    });
    return { status: res.status, body: (await res.json()) as Record<string, any>, headers: res.headers };
  };
}
