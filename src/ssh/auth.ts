/**
 * User authentication (RFC 4252, RFC 4256): the `none` probe, then `publickey` (ssh-ed25519),
 * `password` and `keyboard-interactive`, each tried only when the server lists it.
 *
 * publickey signs (RFC 4252 §7):
 *   string session_id | byte 50 | string user | string "ssh-connection" | string "publickey" |
 *   boolean TRUE | string algorithm | string public key blob
 */
import { SshReader, SshWriter } from './codec.ts';
import {
  MSG_SERVICE_ACCEPT,
  MSG_SERVICE_REQUEST,
  MSG_USERAUTH_BANNER,
  MSG_USERAUTH_FAILURE,
  MSG_USERAUTH_INFO_REQUEST,
  MSG_USERAUTH_INFO_RESPONSE,
  MSG_USERAUTH_REQUEST,
  MSG_USERAUTH_SUCCESS,
} from './constants.ts';
import { SshError } from './errors.ts';
import type { SshEd25519Key } from './keys.ts';

export interface Prompt {
  prompt: string;
  echo: boolean;
}

/** Answers one keyboard-interactive round (RFC 4256 §3.2); one answer per prompt. */
export type KeyboardInteractiveHandler = (name: string, instruction: string, prompts: Prompt[]) => string[] | Promise<string[]>;

export interface AuthOptions {
  username: string;
  /** publickey with this ed25519 key. */
  privateKey?: SshEd25519Key;
  /** password (and keyboard-interactive, answering every prompt with it, when no handler is given). */
  password?: string;
  onKeyboardInteractive?: KeyboardInteractiveHandler;
  /** SSH_MSG_USERAUTH_BANNER text. */
  onBanner?: (message: string) => void;
}

/** What the auth exchange needs from the connection. */
export interface AuthChannel {
  send(payload: Uint8Array): void;
  /** The next message of the service/userauth range (5–79). */
  next(): Promise<Uint8Array>;
  sessionId: Uint8Array;
}

const SERVICE = 'ssh-connection';

type Outcome = { ok: true } | { ok: false; methods: string[]; partial: boolean };

/** The last banner of each exchange: a server that refuses by policy says why in one. */
const lastBanner = new WeakMap<AuthChannel, string>();

/** Separates the server's own words in an SSH_AUTH_FAILED message (see `authFailureReason`). */
const SERVER_SAID = '; the server said: ';

/** The server's banner text carried by an SSH_AUTH_FAILED message, if it sent one. */
export function authFailureReason(message: string): string | undefined {
  const i = message.indexOf(SERVER_SAID);
  return i < 0 ? undefined : message.slice(i + SERVER_SAID.length);
}

/** Reads replies until SUCCESS or FAILURE; `onOther` handles method-specific messages (60–79). */
async function outcome(c: AuthChannel, opts: AuthOptions, onOther?: (p: Uint8Array) => Promise<void>): Promise<Outcome> {
  for (;;) {
    const p = await c.next();
    const r = new SshReader(p, 'userauth reply');
    const type = r.byte();
    if (type === MSG_USERAUTH_SUCCESS) return { ok: true };
    if (type === MSG_USERAUTH_FAILURE) {
      const methods = r.nameList();
      const partial = r.bool();
      return { ok: false, methods, partial };
    }
    if (type === MSG_USERAUTH_BANNER) {
      const msg = r.text();
      lastBanner.set(c, msg);
      try {
        opts.onBanner?.(msg);
      } catch {
        /* the banner is informational */
      }
      continue;
    }
    if (type >= 60 && type <= 79 && onOther) {
      await onOther(p);
      continue;
    }
    throw new SshError('SSH_PROTOCOL', `unexpected message ${type} during user authentication`);
  }
}

/** What a publickey signature covers (RFC 4252 §7): built the same way by client and server. */
export function publickeySignedData(sessionId: Uint8Array, user: string, service: string, alg: string, blob: Uint8Array): Uint8Array {
  return new SshWriter(256).string(sessionId).byte(MSG_USERAUTH_REQUEST).string(user).string(service).string('publickey').bool(true).string(alg).string(blob).bytes();
}

function request(user: string, method: string): SshWriter {
  return new SshWriter(256).byte(MSG_USERAUTH_REQUEST).string(user).string(SERVICE).string(method);
}

/** Runs the whole authentication; resolves on success, rejects with SSH_AUTH_FAILED otherwise. */
export async function authenticate(c: AuthChannel, opts: AuthOptions): Promise<string> {
  c.send(new SshWriter(32).byte(MSG_SERVICE_REQUEST).string('ssh-userauth').bytes());
  for (;;) {
    const p = await c.next();
    if (p[0] === MSG_SERVICE_ACCEPT) break;
    if (p[0] === MSG_USERAUTH_BANNER) continue;
    throw new SshError('SSH_PROTOCOL', `expected SERVICE_ACCEPT, got message ${p[0]}`);
  }
  const user = opts.username;
  c.send(request(user, 'none').bytes());
  let res = await outcome(c, opts);
  if (res.ok) return 'none';
  const tried: string[] = [];
  const attempts: Array<[string, () => Promise<Outcome>]> = [];
  const key = opts.privateKey;
  if (key) {
    attempts.push([
      'publickey',
      () => {
        const blob = key.publicBlob();
        const signed = publickeySignedData(c.sessionId, user, SERVICE, key.algorithm, blob);
        c.send(request(user, 'publickey').bool(true).string(key.algorithm).string(blob).string(key.sign(signed)).bytes());
        return outcome(c, opts);
      },
    ]);
  }
  const password = opts.password;
  if (password !== undefined) {
    attempts.push([
      'password',
      () => {
        c.send(request(user, 'password').bool(false).string(password).bytes());
        // 60 here is PASSWD_CHANGEREQ: not supported, counts as a failure.
        return outcome(c, opts, async () => {
          throw new SshError('SSH_AUTH_FAILED', 'the server demands a password change');
        });
      },
    ]);
  }
  const kbd = opts.onKeyboardInteractive ?? (password !== undefined ? (_n: string, _i: string, ps: Prompt[]) => ps.map(() => password) : undefined);
  if (kbd) {
    attempts.push([
      'keyboard-interactive',
      () => {
        c.send(request(user, 'keyboard-interactive').string('').string('').bytes());
        return outcome(c, opts, async (p) => {
          const r = new SshReader(p, 'USERAUTH_INFO_REQUEST');
          if (r.byte() !== MSG_USERAUTH_INFO_REQUEST) throw new SshError('SSH_PROTOCOL', 'unexpected keyboard-interactive message');
          const name = r.text();
          const instruction = r.text();
          r.string(); // language tag
          const n = r.uint32();
          if (n > 64) throw new SshError('SSH_PROTOCOL', `keyboard-interactive: ${n} prompts`);
          const prompts: Prompt[] = [];
          for (let i = 0; i < n; i++) prompts.push({ prompt: r.text(), echo: r.bool() });
          const answers = await kbd(name, instruction, prompts);
          if (answers.length !== n) throw new SshError('SSH_AUTH_FAILED', `keyboard-interactive handler gave ${answers.length} answers for ${n} prompts`);
          const w = new SshWriter(128).byte(MSG_USERAUTH_INFO_RESPONSE).uint32(n);
          for (const a of answers) w.string(a);
          c.send(w.bytes());
        });
      },
    ]);
  }
  let allowed = res.methods;
  for (const [method, run] of attempts) {
    if (!allowed.includes(method)) continue;
    tried.push(method);
    res = await run();
    if (res.ok) return method;
    allowed = res.methods;
  }
  const said = lastBanner.get(c)?.replace(/[\r\n]+/g, ' ').trim().slice(0, 300);
  throw new SshError(
    'SSH_AUTH_FAILED',
    `authentication failed for ${user} (tried ${tried.join(', ') || 'nothing'}; the server allows ${allowed.join(', ') || 'nothing'})${said ? SERVER_SAID + said : ''}`,
  );
}
