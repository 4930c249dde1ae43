/**
 * Failures as the page shows them (`ApiError`: a stable code and a sentence), from the socket,
 * SSH and control errors of src/.
 */
import { PierceError } from '../src/errors.ts';
import { authFailureReason } from '../src/ssh/auth.ts';
import type { ApiError, ErrorCode } from './api.ts';

export function apiError(code: ErrorCode, message: string, extra: Partial<ApiError> = {}): ApiError {
  return { code, message, ...extra };
}

/** Thrown inside the worker to end an operation with an ApiError. */
export class WorkerError extends Error {
  constructor(readonly error: ApiError) {
    super(error.message);
  }
}

/** Socket error codes a policy refusal (ICMP "administratively prohibited") may surface as. */
const POLICY_CODES = new Set(['EACCES', 'EPERM', 'EPOLICY', 'EPROHIBITED', 'EADMIN', 'ECONNPROHIBITED', 'POLICY_DENIED']);

/** A netstack SocketError while connecting to / talking with host:port. */
export function socketError(e: unknown, host: string, port: number): ApiError {
  const code = e instanceof PierceError ? e.code : '';
  const msg = (e as Error)?.message ?? String(e);
  if (POLICY_CODES.has(code) || /prohibit|policy/i.test(msg)) {
    return apiError('POLICY_DENIED', `the policy does not allow you to reach ${host} port ${port}`);
  }
  switch (code) {
    case 'ECONNREFUSED':
      return apiError('CONNECTION_REFUSED', `${host} refused the connection on port ${port}: nothing listens there`);
    case 'ETIMEDOUT':
      return apiError('CONNECT_TIMEOUT', `no answer from ${host} port ${port} (the host may be offline, or packets are dropped)`);
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return apiError('HOST_UNREACHABLE', `${host} is unreachable: ${msg}`);
    case 'ECONNRESET':
      return apiError('CONNECTION_LOST', `${host} reset the connection`);
    default:
      return apiError('CONNECTION_LOST', `connection to ${host} port ${port} failed: ${msg}`);
  }
}

/** An SshError (or anything) from connecting / authenticating / running a session. */
export function sshError(e: unknown, ctx: { user: string; host: string; port: number; transportError?: unknown }): ApiError {
  if (e instanceof WorkerError) return e.error;
  const code = e instanceof PierceError ? e.code : '';
  const msg = (e as Error)?.message ?? String(e);
  const where = `${ctx.user}@${ctx.host}`;
  switch (code) {
    case 'SSH_AUTH_FAILED': {
      // A server that decides by identity (pierce up --ssh) says why it refused.
      const said = authFailureReason(msg);
      if (said) return apiError('AUTH_FAILED', `${where}: refused by the server: ${said.replace(/^pierce: /, '')}`);
      return apiError('AUTH_FAILED', `${where}: authentication failed — wrong password or key (${msg})`);
    }
    case 'SSH_TIMEOUT':
      return apiError('SSH_TIMEOUT', `${where}: ${msg}`);
    case 'SSH_CLOSED':
      if (ctx.transportError) return socketError(ctx.transportError, ctx.host, ctx.port);
      return apiError('CONNECTION_LOST', `the connection to ${ctx.host} closed (${msg})`);
    case 'SSH_DISCONNECTED':
      return apiError('CONNECTION_LOST', `${ctx.host} disconnected: ${msg}`);
    default:
      return apiError('SSH_ERROR', `${where}: ${code ? `${code}: ` : ''}${msg}`);
  }
}
