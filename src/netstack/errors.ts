import { PierceError } from '../errors.ts';

/**
 * Socket errors, named after their POSIX errno so that Node and browser code can map them:
 *   ECONNREFUSED  the peer answered the SYN with a RST (or ICMP port unreachable)
 *   ECONNRESET    the peer reset an established connection
 *   ETIMEDOUT     no answer: SYN retries, data retries or keepalive probes ran out
 *   EHOSTUNREACH  ICMP host/port unreachable for an established connection
 *   EACCES        ICMP "communication administratively prohibited" (a packet filter refused the SYN)
 *   EPIPE         write after end()
 *   ECONNABORTED  aborted locally (abort(), or the stack shut down)
 *   EADDRINUSE    listen or bind on a port already taken
 *   EADDRNOTAVAIL bind to an address that is not ours
 *   EMFILE        the connection or socket limit is reached
 *   ENETUNREACH   no route for the destination (address family not configured)
 */
export class SocketError extends PierceError {}
