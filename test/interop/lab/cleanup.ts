/**
 * Cleanup to await from test hooks: `cleanupChildren` (afterEach) and `cleanupAll` (afterAll).
 * The synchronous exit-time cleanup and `cleanupStale` live in registry.ts.
 */
import { deleteNamespace } from './netns.ts';
import { children, namespaces, removeOwnWgSockets, removeTempDir } from './registry.ts';
import { removeAllUsers } from './users.ts';

/** Kills every child still running (SIGTERM, then SIGKILL); namespaces stay. For afterEach. */
export async function cleanupChildren(): Promise<void> {
  await Promise.all([...children].map((c) => c.kill()));
  removeOwnWgSockets(false);
}

/** Kills all children, kills processes inside our namespaces, deletes them, removes temp files and users made by createUser. */
export async function cleanupAll(): Promise<void> {
  await Promise.all([...children].map((c) => c.kill()));
  for (const ns of [...namespaces]) await deleteNamespace(ns);
  removeOwnWgSockets(true);
  removeTempDir();
  await removeAllUsers();
}
