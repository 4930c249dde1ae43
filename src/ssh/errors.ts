/**
 * SSH errors. Every failure of the SSH client and server is an `SshError` (a `PierceError`) with one of
 * these stable codes; a failure closes only the connection it happened on.
 */
import { PierceError } from '../errors.ts';

export type SshErrorCode =
  /** Malformed or unexpected packet, bad version line, limits exceeded. */
  | 'SSH_PROTOCOL'
  /** Packet authentication (Poly1305 tag) failed. */
  | 'SSH_MAC'
  /** No common algorithm, or a bad key exchange reply / host key signature. */
  | 'SSH_KEX'
  /** The verifyHostKey callback refused the server's host key. */
  | 'SSH_HOSTKEY_REJECTED'
  /** KnownHosts: the server's host key differs from the one on record (possible MITM). */
  | 'SSH_HOSTKEY_MISMATCH'
  /** KnownHosts: the stored record for a host cannot be read. */
  | 'SSH_KNOWN_HOSTS_CORRUPT'
  /** Every offered authentication method failed. */
  | 'SSH_AUTH_FAILED'
  /** The server sent SSH_MSG_DISCONNECT. */
  | 'SSH_DISCONNECTED'
  /** The byte stream closed, or the client was closed locally. */
  | 'SSH_CLOSED'
  /** A bounded wait (handshake, channel open, request) ran out. */
  | 'SSH_TIMEOUT'
  /** The server refused to open a channel or a channel request. */
  | 'SSH_CHANNEL'
  /** The server started a re-key, which this client does not implement. */
  | 'SSH_REKEY_UNSUPPORTED';

export class SshError extends PierceError {
  declare readonly code: SshErrorCode;
  constructor(code: SshErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** Wraps anything thrown into an SshError (non-Pierce errors become SSH_PROTOCOL). */
export function toSshError(e: unknown): SshError {
  if (e instanceof SshError) return e;
  if (e instanceof PierceError) return new SshError('SSH_PROTOCOL', e.message, { cause: e });
  return new SshError('SSH_PROTOCOL', `internal error: ${(e as Error)?.message ?? String(e)}`, { cause: e });
}
