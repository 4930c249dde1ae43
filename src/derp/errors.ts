import { PierceError } from '../errors.ts';

/**
 * DERP errors. Codes:
 *   DERP_FRAME_TOO_LARGE      a frame header announces more than the reader's limit (1 MiB by
 *                             default) or a packet frame carries more than MAX_PACKET_SIZE
 *   DERP_PACKET_TOO_LARGE     asked to send a packet over MAX_PACKET_SIZE
 *   DERP_BAD_FRAME            a frame's payload has the wrong length or layout for its type
 *   DERP_BAD_MAGIC            the ServerKey frame does not start with "DERP🔑"
 *   DERP_UNEXPECTED_FRAME     a frame that is not allowed in the current handshake state
 *   DERP_INFO_TOO_LARGE       a ClientInfo / ServerInfo over its size bound
 *   DERP_BAD_BOX              a sealed info message does not open (wrong key or corrupted)
 *   DERP_BAD_JSON             a sealed info message is not the expected JSON object
 *   DERP_BAD_VERSION          ClientInfo declares a protocol version other than 2
 *   DERP_SERVER_KEY_MISMATCH  the server's ServerKey differs from the pinned key
 *   DERP_HANDSHAKE_TIMEOUT    no ServerInfo within the handshake timeout
 *   DERP_TIMEOUT              no frame from the server within the read timeout (120 s)
 *   DERP_NOT_READY            send attempted before the ClientInfo was sent
 *   DERP_PING_BUSY            a ping with the same 8 bytes is still outstanding, or too many
 *   DERP_CLOSED               the connection is closed (EOF, close() or an earlier error)
 *   DERP_DEAD                 input fed to a FrameReader after it failed
 *   DERP_BAD_URL              a relay URL that is not http(s) or ws(s) (src/browser/derp-ws.ts)
 */
export class DerpError extends PierceError {}
