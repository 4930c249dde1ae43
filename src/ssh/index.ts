/** Pierce's SSH client and server: browser-safe, on noble, over any byte duplex. See docs/ssh.md. */
export { SshClient, type ConnectOptions, type RunResult } from './client.ts';
export { SshChannel, type ExitInfo, type PtyOptions } from './channel.ts';
export { SshTransport, type SshDuplex, type HostKeyVerifier, type TransportOptions, type ServerTransportOptions } from './transport.ts';
export { serveSsh, SshServerConnection, type SshServerOptions, type AuthMethod, type AuthRequest, type AuthVerdict } from './server.ts';
export { ServerSession, type PtyRequest, type RequestAnswer } from './server-session.ts';
export { type KeyboardInteractiveHandler, type Prompt } from './auth.ts';
export {
  SshEd25519Key,
  fingerprintSha256,
  parsePublicKeyLine,
  ed25519PublicBlob,
  generateHostKeySeed,
  hostKeyPublicBlob,
  publicKeyLine,
} from './keys.ts';
export { KnownHosts, memoryStore, knownHostsName, knownHostsLine, type KeyValueStore, type HostKeyCheck, type KnownHostEntry } from './known-hosts.ts';
export { SshError, type SshErrorCode } from './errors.ts';
