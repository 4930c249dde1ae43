/** `pierce share`: shareable session links (a short-lived, limited-use key behind a URL). */
import { UsageError, type Io } from './main.ts';
import { parseDuration } from './duration.ts';
import { call, connection, out, parseCommand, positiveCount, s, table, when, type Row } from './admin.ts';

export const SHARE_USAGE = `Usage: pierce share create [--tags tag:a,tag:b] [--ttl 1h] [--uses 1] [--to [USER@]HOST[:PORT]]
                          [--user NAME] [--description TEXT] [--json]
       pierce share list [--json]
       pierce share revoke ID

Makes a link that lets someone join the tailnet from a browser for a while, without an account:
the link carries an ephemeral auth key good for --uses registrations until --ttl runs out.
Nodes that joined through a link are deleted when it expires or is revoked.

  create            prints the link, then the share's id and expiry
    --tags T,T      tags for the nodes that join (must be in the policy's tagOwners)
    --ttl DURATION  how long the link and its nodes live (default 1h; e.g. 30m, 2h, 1d)
    --uses N        how many browsers may join with it (default 1)
    --to TARGET     open an SSH session to [USER@]HOST[:PORT] on arrival
    --user NAME     the user owning the nodes (default "shared", created on demand)
    --description   a note shown in listings
  list              shares with their state (active, used-up, expired, revoked) and live nodes
  revoke ID         stops the link and deletes every node that joined through it

  --control URL     the control server (default $PIERCE_CONTROL or http://127.0.0.1:8080)
  --api-key KEY     an admin API key (default $PIERCE_API_KEY)
  --json            print the API's JSON

The link points at the page given to \`pierce control --web-url\` (default: the control server).
`;

export async function shareCommand(argv: string[], io: Io): Promise<number> {
  const parsed = parseCommand(argv, io, SHARE_USAGE, {
    tags: { type: 'string' },
    ttl: { type: 'string' },
    uses: { type: 'string' },
    to: { type: 'string' },
    user: { type: 'string' },
    description: { type: 'string' },
  });
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  const [action, id, ...extra] = positionals;
  if (extra.length) throw new UsageError(`share ${action}: unexpected "${extra.join(' ')}"`);
  const ctx = connection(values, io, 'share');
  switch (action) {
    case 'create': {
      if (id !== undefined) throw new UsageError(`share create takes no positional argument ("${id}"); did you mean --to ${id}?`);
      const body: Row = {};
      if (values.tags !== undefined) body['tags'] = values.tags.split(',').map((t) => t.trim()).filter(Boolean);
      if (values.ttl !== undefined) {
        const ms = parseDuration(values.ttl, '--ttl');
        if (ms <= 0) throw new UsageError('--ttl must be more than 0');
        body['ttlSeconds'] = ms / 1000;
      }
      if (values.uses !== undefined) body['uses'] = positiveCount('--uses', values.uses);
      if (values.to !== undefined) body['to'] = values.to;
      if (values.user !== undefined) body['user'] = values.user;
      if (values.description !== undefined) body['description'] = values.description;
      const v = await call(ctx, 'POST', '/shares', body);
      const sh = v['share'] as Row;
      return out(ctx, v, () => {
        io.stdout(`${s(v['url'])}\n`);
        io.stdout(`share ${s(sh['id'])}: ${s(sh['uses'])} use(s), expires ${when(sh['expiresAt'])}${(sh['tags'] as string[]).length ? `, tags ${s(sh['tags'])}` : ''}${sh['to'] ? `, ssh ${s(sh['to'])}` : ''}\n`);
        io.stdout(`revoke with: pierce share revoke ${s(sh['id'])}\n`);
      });
    }
    case 'list': {
      const v = await call(ctx, 'GET', '/shares');
      return out(ctx, v, () =>
        table(
          io,
          ['ID', 'STATE', 'USED', 'TAGS', 'TO', 'EXPIRES', 'NODES', 'DESCRIPTION'],
          (v['shares'] as Row[]).map((x) => [
            s(x['id']),
            s(x['state']),
            `${s(x['used'])}/${s(x['uses'])}`,
            s(x['tags']),
            s(x['to']),
            when(x['expiresAt']),
            (x['nodes'] as Row[]).map((n) => `${s(n['name'])}(${s(n['id'])})`).join(',') || '-',
            s(x['description'] || null),
          ]),
        ),
      );
    }
    case 'revoke': {
      if (id === undefined) throw new UsageError('share revoke needs ID (see `pierce share list`)');
      const v = await call(ctx, 'DELETE', `/shares/${encodeURIComponent(id)}`);
      const gone = (v['deletedNodes'] as number[] | undefined) ?? [];
      return out(ctx, v, () => io.stdout(`revoked share ${id}${gone.length ? `; deleted node(s) ${gone.join(', ')}` : ''}\n`));
    }
    default:
      throw new UsageError(action === undefined ? 'share needs create, list or revoke' : `unknown share command "${action}" (create, list, revoke)`);
  }
}
