/** A control store's NodeRecord for tests that drive the netmap without a store or sockets. */
import type { NodeRecord } from '../../gateway/src/store/types.ts';

/**
 * Node `id` of user number `user`: name and hostname `n<id>`, keys `mkey:<id>` …, addresses
 * 100.64.0.<id> and fd7a:115c:a1e0::<id>; `over` replaces any field.
 */
export function nodeRecord(id: number, user: number, tags: string[], over: Partial<NodeRecord> = {}): NodeRecord {
  return {
    id,
    machineKey: `mkey:${id}`,
    nodeKey: `nodekey:${id}`,
    discoKey: `discokey:${id}`,
    name: `n${id}`,
    hostname: `n${id}`,
    userId: user,
    tags,
    ipv4: `100.64.0.${id}`,
    ipv6: `fd7a:115c:a1e0::${id}`,
    ephemeral: false,
    authKeyId: null,
    createdAt: 0,
    keyExpiry: null,
    lastSeen: null,
    loggedOut: false,
    ...over,
  };
}
