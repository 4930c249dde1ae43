/** SSH message numbers (RFC 4250 §4.1) and other protocol constants. */

// Transport layer generic (RFC 4253 §12)
export const MSG_DISCONNECT = 1;
export const MSG_IGNORE = 2;
export const MSG_UNIMPLEMENTED = 3;
export const MSG_DEBUG = 4;
export const MSG_SERVICE_REQUEST = 5;
export const MSG_SERVICE_ACCEPT = 6;
export const MSG_EXT_INFO = 7; // RFC 8308
// Algorithm negotiation
export const MSG_KEXINIT = 20;
export const MSG_NEWKEYS = 21;
// Key exchange method specific (RFC 5656 §7.1, used by RFC 8731)
export const MSG_KEX_ECDH_INIT = 30;
export const MSG_KEX_ECDH_REPLY = 31;
// User authentication (RFC 4252 §6, RFC 4256)
export const MSG_USERAUTH_REQUEST = 50;
export const MSG_USERAUTH_FAILURE = 51;
export const MSG_USERAUTH_SUCCESS = 52;
export const MSG_USERAUTH_BANNER = 53;
export const MSG_USERAUTH_INFO_REQUEST = 60; // also PK_OK / PASSWD_CHANGEREQ, by method
export const MSG_USERAUTH_INFO_RESPONSE = 61;
// Connection protocol (RFC 4254 §9)
export const MSG_GLOBAL_REQUEST = 80;
export const MSG_REQUEST_SUCCESS = 81;
export const MSG_REQUEST_FAILURE = 82;
export const MSG_CHANNEL_OPEN = 90;
export const MSG_CHANNEL_OPEN_CONFIRMATION = 91;
export const MSG_CHANNEL_OPEN_FAILURE = 92;
export const MSG_CHANNEL_WINDOW_ADJUST = 93;
export const MSG_CHANNEL_DATA = 94;
export const MSG_CHANNEL_EXTENDED_DATA = 95;
export const MSG_CHANNEL_EOF = 96;
export const MSG_CHANNEL_CLOSE = 97;
export const MSG_CHANNEL_REQUEST = 98;
export const MSG_CHANNEL_SUCCESS = 99;
export const MSG_CHANNEL_FAILURE = 100;

/** Disconnect reason codes (RFC 4253 §11.1). */
export const DISCONNECT_PROTOCOL_ERROR = 2;
export const DISCONNECT_KEY_EXCHANGE_FAILED = 3;
export const DISCONNECT_MAC_ERROR = 5;
export const DISCONNECT_SERVICE_NOT_AVAILABLE = 7;
export const DISCONNECT_HOST_KEY_NOT_VERIFIABLE = 9;
export const DISCONNECT_BY_APPLICATION = 11;
export const DISCONNECT_NO_MORE_AUTH_METHODS = 14;

/** Channel open failure reason codes (RFC 4254 §5.1). */
export const OPEN_ADMINISTRATIVELY_PROHIBITED = 1;
export const OPEN_UNKNOWN_CHANNEL_TYPE = 3;
export const OPEN_RESOURCE_SHORTAGE = 4;
/** SSH_MSG_USERAUTH_PK_OK (RFC 4252 §7): the publickey-specific meaning of 60. */
export const MSG_USERAUTH_PK_OK = 60;
/** Extended data type for stderr (RFC 4254 §5.2). */
export const EXTENDED_DATA_STDERR = 1;

/** Largest packet accepted (OpenSSH's PACKET_MAX_SIZE; RFC 4253 §6.1 requires ≥ 35000). */
export const MAX_PACKET_LENGTH = 256 * 1024;
/** Longest identification line (RFC 4253 §4.2: 255 including CR LF). */
export const MAX_VERSION_LINE = 255;
/** Lines a server may send before its version line (OpenSSH allows 1024). */
export const MAX_PRE_BANNER_LINES = 1024;

export const KEX_CURVE25519 = 'curve25519-sha256';
export const KEX_CURVE25519_LIBSSH = 'curve25519-sha256@libssh.org';
export const KEX_STRICT_CLIENT = 'kex-strict-c-v00@openssh.com';
export const KEX_STRICT_SERVER = 'kex-strict-s-v00@openssh.com';
export const HOSTKEY_ED25519 = 'ssh-ed25519';
export const CIPHER_CHACHA = 'chacha20-poly1305@openssh.com';
