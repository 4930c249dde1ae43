/**
 * A WireGuard peer: its handshake, its keypairs (next / current / previous), the packets staged
 * while no session is ready, and the timers of the paper's §6 (as wireguard-go's timers.go).
 *
 * Timers are absolute deadlines on the injected monotonic clock; `Device.tick(now)` fires the
 * expired ones. Nothing here reads a clock or starts a timer by itself.
 */
import { NodePublic, PresharedKey } from '../key/keys.ts';
import { CookieGenerator } from './cookie.ts';
import { MAX_TIMER_HANDSHAKES, REKEY_TIMEOUT_JITTER_MAX } from './constants.ts';
import type { Keypair } from './keypair.ts';
import { createInitiation, Handshake } from './noise.ts';
import type { DeviceCore, Endpoint } from './types.ts';

export type TimerName = 'retransmitHandshake' | 'sendKeepalive' | 'newHandshake' | 'zeroKeyMaterial' | 'persistentKeepalive';
export const TIMER_NAMES: readonly TimerName[] = ['retransmitHandshake', 'sendKeepalive', 'newHandshake', 'zeroKeyMaterial', 'persistentKeepalive'];

export interface PeerStats {
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
  /** Wall-clock ms of the last completed handshake, 0 if none. */
  lastHandshake: number;
  handshakesCompleted: number;
  handshakeInitiationsSent: number;
  droppedStaged: number;
}

export class Peer<E extends Endpoint = Endpoint> {
  readonly handshake: Handshake;
  readonly cookies: CookieGenerator;
  next: Keypair | null = null;
  current: Keypair | null = null;
  previous: Keypair | null = null;
  endpoint: E | null;
  /** Persistent keepalive interval in seconds; 0 is off. */
  persistentKeepalive: number;
  readonly staged: Uint8Array[] = [];
  readonly timers: Record<TimerName, number | null> = {
    retransmitHandshake: null,
    sendKeepalive: null,
    newHandshake: null,
    zeroKeyMaterial: null,
    persistentKeepalive: null,
  };
  handshakeAttempts = 0;
  needAnotherKeepalive = false;
  sentLastMinuteHandshake = false;
  readonly stats: PeerStats = {
    rxBytes: 0,
    txBytes: 0,
    rxPackets: 0,
    txPackets: 0,
    lastHandshake: 0,
    handshakesCompleted: 0,
    handshakeInitiationsSent: 0,
    droppedStaged: 0,
  };

  constructor(
    private readonly dev: DeviceCore<E>,
    readonly publicKey: NodePublic,
    presharedKey: PresharedKey | undefined,
    endpoint: E | undefined,
    persistentKeepalive: number,
  ) {
    const psk = (presharedKey ?? PresharedKey.zero()).raw();
    this.handshake = new Handshake(publicKey.raw(), psk, dev.local, dev.ctx.backend);
    this.cookies = new CookieGenerator(publicKey.rawView());
    this.endpoint = endpoint ?? null;
    this.persistentKeepalive = persistentKeepalive;
  }

  toString(): string {
    return `peer(${this.publicKey.short()})`;
  }

  setPresharedKey(psk: PresharedKey | undefined): void {
    this.handshake.presharedKey = (psk ?? PresharedKey.zero()).raw();
  }

  /** The earliest pending timer deadline, or null. */
  nextDeadline(): number | null {
    let min: number | null = null;
    for (const t of TIMER_NAMES) {
      const d = this.timers[t];
      if (d !== null && (min === null || d < min)) min = d;
    }
    return min;
  }

  private jitter(): number {
    const r = this.dev.ctx.random(2);
    return ((r[0]! << 8) | r[1]!) % REKEY_TIMEOUT_JITTER_MAX;
  }

  // ---- timer events (wireguard-go timers.go) ----

  timersDataSent(now: number): void {
    if (this.timers.newHandshake === null) {
      this.timers.newHandshake = now + this.dev.limits.keepaliveTimeout + this.dev.limits.rekeyTimeout + this.jitter();
    }
  }

  timersDataReceived(now: number): void {
    if (this.timers.sendKeepalive === null) this.timers.sendKeepalive = now + this.dev.limits.keepaliveTimeout;
    else this.needAnotherKeepalive = true;
  }

  timersAnyAuthenticatedPacketSent(): void {
    this.timers.sendKeepalive = null;
  }

  timersAnyAuthenticatedPacketReceived(): void {
    this.timers.newHandshake = null;
  }

  timersHandshakeInitiated(now: number): void {
    this.timers.retransmitHandshake = now + this.dev.limits.rekeyTimeout + this.jitter();
  }

  timersHandshakeComplete(now: number): void {
    this.timers.retransmitHandshake = null;
    this.handshakeAttempts = 0;
    this.sentLastMinuteHandshake = false;
    this.stats.lastHandshake = this.dev.ctx.wallClock();
    this.stats.handshakesCompleted++;
    void now;
  }

  timersSessionDerived(now: number): void {
    this.timers.zeroKeyMaterial = now + this.dev.limits.rejectAfterTime * 3;
  }

  timersAnyAuthenticatedPacketTraversal(now: number): void {
    if (this.persistentKeepalive > 0) this.timers.persistentKeepalive = now + this.persistentKeepalive * 1000;
  }

  /** Runs the handler of timer `t` (already past its deadline). */
  fire(t: TimerName, now: number): void {
    this.timers[t] = null;
    switch (t) {
      case 'retransmitHandshake':
        if (this.handshakeAttempts > MAX_TIMER_HANDSHAKES) {
          this.dev.log('info', `${this}: handshake did not complete after ${MAX_TIMER_HANDSHAKES + 2} attempts, giving up`);
          this.timers.sendKeepalive = null;
          this.stats.droppedStaged += this.staged.length;
          this.staged.length = 0;
          if (this.timers.zeroKeyMaterial === null) this.timers.zeroKeyMaterial = now + this.dev.limits.rejectAfterTime * 3;
          this.dev.event({ type: 'handshake-failed', peer: this });
        } else {
          this.handshakeAttempts++;
          this.dev.log('debug', `${this}: handshake did not complete after ${this.dev.limits.rekeyTimeout / 1000} s, retrying (try ${this.handshakeAttempts + 1})`);
          this.sendHandshakeInitiation(true, now);
        }
        break;
      case 'sendKeepalive':
        this.sendKeepalive(now);
        if (this.needAnotherKeepalive) {
          this.needAnotherKeepalive = false;
          this.timers.sendKeepalive = now + this.dev.limits.keepaliveTimeout;
        }
        break;
      case 'newHandshake':
        this.dev.log('debug', `${this}: retrying handshake because we stopped hearing back`);
        this.sendHandshakeInitiation(false, now);
        break;
      case 'zeroKeyMaterial':
        this.dev.log('debug', `${this}: removing all keys, no new handshake in ${(this.dev.limits.rejectAfterTime * 3) / 1000} s`);
        this.zeroAndFlushAll();
        break;
      case 'persistentKeepalive':
        if (this.persistentKeepalive > 0) this.sendKeepalive(now);
        break;
    }
  }

  // ---- sending ----

  /** Sends a handshake initiation unless one went out less than Rekey-Timeout ago. */
  sendHandshakeInitiation(isRetry: boolean, now: number): void {
    if (!isRetry) this.handshakeAttempts = 0;
    const hs = this.handshake;
    if (now - hs.lastSentHandshake < this.dev.limits.rekeyTimeout) return;
    hs.lastSentHandshake = now;
    this.dev.releaseIndex(hs.localIndex);
    const index = this.dev.allocateIndex(this, null);
    let msg: Uint8Array;
    try {
      msg = createInitiation(this.dev.ctx, this.dev.local, hs, index, this.dev.ctx.wallClock());
    } catch (e) {
      this.dev.releaseIndex(index);
      this.dev.log('warn', `${this}: cannot create a handshake initiation: ${(e as Error).message}`);
      return;
    }
    this.cookies.addMacs(msg, now);
    this.timersAnyAuthenticatedPacketTraversal(now);
    this.timersAnyAuthenticatedPacketSent();
    this.stats.handshakeInitiationsSent++;
    this.transmit(msg, 'handshake initiation');
    this.timersHandshakeInitiated(now);
  }

  /** Queues an outbound IP packet (dropping the oldest past the limit). */
  stage(packet: Uint8Array): void {
    this.staged.push(packet);
    if (this.staged.length > this.dev.limits.maxStagedPackets) {
      this.staged.shift();
      this.stats.droppedStaged++;
    }
  }

  sendKeepalive(now: number): void {
    if (this.staged.length === 0) this.staged.push(new Uint8Array(0));
    this.sendStaged(now);
  }

  /** Encrypts and sends staged packets with the current keypair, or starts a handshake. */
  sendStaged(now: number): void {
    const kp = this.current;
    const lim = this.dev.limits;
    if (!kp || kp.sendCounter >= lim.rejectAfterMessages || now - kp.created >= lim.rejectAfterTime) {
      this.sendHandshakeInitiation(false, now);
      return;
    }
    while (this.staged.length > 0) {
      const pkt = this.staged.shift()!;
      const counter = kp.sendCounter;
      if (counter >= lim.rejectAfterMessages) {
        this.staged.unshift(pkt);
        this.sendHandshakeInitiation(false, now);
        return;
      }
      kp.sendCounter = counter + 1;
      const datagram = kp.seal(this.dev.ctx.backend, pkt, counter, this.dev.mtu);
      this.timersAnyAuthenticatedPacketTraversal(now);
      this.timersAnyAuthenticatedPacketSent();
      if (pkt.length > 0) {
        this.timersDataSent(now);
        this.stats.txPackets++;
      }
      this.transmit(datagram, 'data');
    }
    this.keepKeyFreshSending(now);
  }

  private transmit(datagram: Uint8Array, what: string): void {
    if (!this.endpoint) {
      this.dev.log('debug', `${this}: no endpoint known, cannot send ${what}`);
      return;
    }
    this.stats.txBytes += datagram.length;
    this.dev.sink.send(this.endpoint, datagram);
  }

  private keepKeyFreshSending(now: number): void {
    const kp = this.current;
    if (!kp) return;
    if (kp.sendCounter > this.dev.limits.rekeyAfterMessages || (kp.isInitiator && now - kp.created > this.dev.limits.rekeyAfterTime)) {
      this.sendHandshakeInitiation(false, now);
    }
  }

  keepKeyFreshReceiving(now: number): void {
    if (this.sentLastMinuteHandshake) return;
    const kp = this.current;
    const lim = this.dev.limits;
    if (kp && kp.isInitiator && now - kp.created > lim.rejectAfterTime - lim.keepaliveTimeout - lim.rekeyTimeout) {
      this.sentLastMinuteHandshake = true;
      this.sendHandshakeInitiation(false, now);
    }
  }

  // ---- keypairs ----

  /** Installs a new keypair (wireguard-go's BeginSymmetricSession rotation). */
  installKeypair(kp: Keypair): void {
    const { previous, next, current } = this;
    if (kp.isInitiator) {
      if (next) {
        this.next = null;
        this.previous = next;
        this.dev.dropKeypair(current);
      } else {
        this.previous = current;
      }
      this.dev.dropKeypair(previous);
      this.current = kp;
    } else {
      this.next = kp;
      this.dev.dropKeypair(next);
      this.previous = null;
      this.dev.dropKeypair(previous);
    }
  }

  /** Called after a packet authenticated with `kp`: confirms `next` (responder side). */
  receivedWithKeypair(kp: Keypair): boolean {
    if (this.next !== kp) return false;
    this.dev.dropKeypair(this.previous);
    this.previous = this.current;
    this.current = kp;
    this.next = null;
    return true;
  }

  /** Forgets all keys, the handshake and staged packets. */
  zeroAndFlushAll(): void {
    this.dev.dropKeypair(this.previous);
    this.dev.dropKeypair(this.current);
    this.dev.dropKeypair(this.next);
    this.previous = this.current = this.next = null;
    this.dev.releaseIndex(this.handshake.localIndex);
    this.handshake.clear();
    this.staged.length = 0;
  }

  /** Forces a new handshake now, as if Rekey-After-Time had passed (used by `wg up` on SIGUSR1). */
  forceHandshake(now: number): void {
    this.handshake.lastSentHandshake = -Infinity;
    this.sendHandshakeInitiation(false, now);
  }
}
