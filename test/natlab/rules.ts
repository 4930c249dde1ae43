/**
 * nftables rulesets for the NAT lab's routers (text for `nft -f -` inside the router's namespace).
 *
 * Every router keeps one `table inet plab` with:
 * - input: from the WAN only replies (`ct state established,related`) and ICMP are accepted, so
 *   unsolicited packets to the router never leave confirmed conntrack entries that could steal
 *   ports from later mappings; a router with miniupnpd also takes the lab STUN server's answers
 *   (they come from another address/port for RFC 5780 CHANGE-REQUESTs).
 * - forward: from the WAN only `ct state established,related` (plus, with miniupnpd, what its
 *   chain accepts for a mapping); everything from the LAN goes out.
 * - postrouting: source NAT out of the WAN, never for the router's own address (`ip saddr != WAN`):
 *   'edm' (hard): `masquerade fully-random`, a random port per conntrack entry, so the mapping
 *   depends on the destination.
 *   'eim' (easy, and the carrier): endpoint-independent mapping. Plain `masquerade` is only EIM
 *   while no two inside hosts use the same source port: Linux keeps a port whenever the 5-tuple
 *   is free, so two hosts on port 41641 would share public port 41641 towards different peers
 *   and the second one would get a fresh random port per destination wherever the first one
 *   already talks (endpoint-dependent for it). So EIM is kept in two dynamic maps, fed from the
 *   packet path (after source NAT, and by the replies coming in), whose entries live MAP_TIMEOUT_S
 *   after the mapping's last packet either way:
 *     sub2pub: proto . inside address . inside port → public port
 *     pub2sub: proto . public port                  → inside address . inside port
 *   A flow from an inside address:port that has a mapping is SNAT'd to that public port; one
 *   without a mapping keeps its port (`masquerade`) unless another inside address owns that
 *   port (`masquerade random`). ICMP and other protocols: plain masquerade.
 *
 * The hairpinning carrier NAT uses the same maps: a packet from inside to the carrier's public
 * address is DNAT'd with pub2sub to the subscriber that owns the port, and SNAT'd with sub2pub
 * to the sender's own public port, so the receiver sees the sender's public mapping (what STUN
 * showed) and conntrack matches the reverse direction of the same hairpin flow. Without
 * hairpinning such a packet is for the carrier itself and dropped (nothing listens there).
 */

export type NatMode = 'eim' | 'edm';

/** How long an EIM mapping lives after its last packet (RFC 4787 REQ-5: at least 2 minutes). */
export const MAP_TIMEOUT_S = 300;

export const TABLE = 'plab';
/** miniupnpd's chain names inside `table inet plab` (its config names them). */
export const UPNP_CHAINS = { forward: 'upnp_forward', prerouting: 'upnp_prerouting', postrouting: 'upnp_postrouting' } as const;

export interface NatRules {
  /** WAN interface name and IPv4 address. */
  wanIf: string;
  wan: string;
  mode: NatMode;
  /** Drop all forwarded UDP (both directions). */
  blockUdp?: boolean;
  /** miniupnpd's chains (see miniupnpd.ts) and the lab STUN server it uses. */
  upnp?: { stunServers: readonly string[]; stunPorts: readonly number[] };
  /** NAT64: rewrite `from` (the RFC 6052 prefix) onto tayga's `to` prefix (both /96). */
  nat64?: { from: string; to: string };
  /** Hairpinning for packets from `insideIf` to the WAN address (EIM only). */
  hairpin?: { insideIf: string };
}

const TCP_UDP = 'meta l4proto { tcp, udp }';

export function natRules(r: NatRules): string {
  const eim = r.mode === 'eim';
  if (r.hairpin && !eim) throw new Error('natRules: hairpinning needs mode eim');
  const wan = `oifname "${r.wanIf}" ip saddr != ${r.wan}`;
  const L: string[] = [`table inet ${TABLE} {`];
  const chain = (name: string, hook: string | null, rules: readonly string[]): void => {
    L.push(`  chain ${name} {`, ...(hook ? [`    ${hook}`] : []), ...rules.map((x) => `    ${x}`), '  }');
  };

  chain('input', 'type filter hook input priority filter; policy accept;', [
    `iifname "${r.wanIf}" ct state established,related accept`,
    `iifname "${r.wanIf}" meta l4proto { icmp, ipv6-icmp } accept`,
    ...(r.upnp ? [`iifname "${r.wanIf}" ip saddr { ${r.upnp.stunServers.join(', ')} } udp sport { ${r.upnp.stunPorts.join(', ')} } accept`] : []),
    `iifname "${r.wanIf}" drop`,
  ]);
  chain('forward', 'type filter hook forward priority filter; policy accept;', [
    ...(r.blockUdp ? ['meta l4proto udp counter drop'] : []),
    ...(eim ? [`iifname "${r.wanIf}" ct status snat jump eim_record`] : []),
    `iifname "${r.wanIf}" ct state established,related accept`,
    ...(r.upnp ? [`iifname "${r.wanIf}" jump ${UPNP_CHAINS.forward}`] : []),
    `iifname "${r.wanIf}" counter drop`,
  ]);
  if (r.upnp || r.nat64 || r.hairpin) {
    chain('prerouting', 'type nat hook prerouting priority dstnat; policy accept;', [
      ...(r.upnp ? [`jump ${UPNP_CHAINS.prerouting}`] : []),
      ...(r.nat64 ? [`ip6 daddr ${r.nat64.from} dnat ip6 prefix to ${r.nat64.to}`] : []),
      ...(r.hairpin ? [`iifname "${r.hairpin.insideIf}" ip daddr ${r.wan} ${TCP_UDP} counter dnat ip addr . port to meta l4proto . th dport map @pub2sub`] : []),
    ]);
  }
  const hp = r.hairpin ? `iifname "${r.hairpin.insideIf}" oifname "${r.hairpin.insideIf}" ct status dnat` : '';
  chain('postrouting', 'type nat hook postrouting priority srcnat; policy accept;', [
    ...(r.upnp ? [`jump ${UPNP_CHAINS.postrouting}`] : []),
    ...(r.hairpin
      ? [`${hp} ${TCP_UDP} counter snat ip to ${r.wan} : meta l4proto . ip saddr . th sport map @sub2pub`, `${hp} counter snat ip to ${r.wan}`]
      : []),
    ...(eim
      ? [
          `${wan} ${TCP_UDP} snat ip to ${r.wan} : meta l4proto . ip saddr . th sport map @sub2pub`,
          `${wan} ${TCP_UDP} meta l4proto . th sport @pub2sub masquerade random`,
          `${wan} masquerade`,
        ]
      : [`${wan} masquerade fully-random`]),
  ]);
  if (eim) {
    const t = `timeout ${MAP_TIMEOUT_S}s`;
    L.push(
      '  map sub2pub {',
      '    type inet_proto . ipv4_addr . inet_service : inet_service',
      `    flags dynamic,timeout; ${t};`,
      '  }',
      '  map pub2sub {',
      '    type inet_proto . inet_service : ipv4_addr . inet_service',
      `    flags dynamic,timeout; ${t};`,
      '  }',
    );
    // After source NAT the reply tuple's destination port is the public port.
    chain('eim_record', null, [
      `${TCP_UDP} update @sub2pub { meta l4proto . ct original ip saddr . ct original proto-src ${t} : ct reply proto-dst }`,
      `${TCP_UDP} update @pub2sub { meta l4proto . ct reply proto-dst ${t} : ct original ip saddr . ct original proto-src }`,
    ]);
    chain('record', 'type filter hook postrouting priority 200; policy accept;', [`oifname "${r.wanIf}" ct status snat jump eim_record`]);
  }
  if (r.upnp) for (const c of Object.values(UPNP_CHAINS)) chain(c, null, []);
  L.push('}', '');
  return L.join('\n');
}

/** A home router (easy, hard, udp-blocked, hard-upnp, lan, nat64, the homes behind a carrier). */
export function routerRules(r: Omit<NatRules, 'hairpin'>): string {
  return natRules(r);
}

/** The carrier NAT: EIM out of the WAN; optionally hairpinning for the carrier segment `insideIf`. */
export function carrierRules(c: { wanIf: string; wan: string; insideIf: string; hairpin: boolean }): string {
  return natRules({ wanIf: c.wanIf, wan: c.wan, mode: 'eim', ...(c.hairpin ? { hairpin: { insideIf: c.insideIf } } : {}) });
}
