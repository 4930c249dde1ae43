/**
 * HuJSON (JSON with `//` and `/* *\/` comments and trailing commas, github.com/tailscale/hujson)
 * into plain values, through jsonc-parser's tree so that errors can say line:column.
 *
 * Objects become `Map`s (so keys like "__proto__" are data, never prototypes), duplicate keys are
 * rejected, and nesting is bounded before the recursive parser runs, so no input can exhaust the
 * stack. Syntax errors throw PolicyError `POLICY_SYNTAX`.
 */
import { createScanner, findNodeAtLocation, parseTree, printParseErrorCode, type Node, type ParseError } from 'jsonc-parser';
import { PolicyError } from './types.ts';

export type Json = null | boolean | number | string | Json[] | JsonObject;
export type JsonObject = Map<string, Json>;

/** A path into the document: object keys and array indices. */
export type JsonPath = (string | number)[];

/** Deepest nesting of arrays and objects a policy may have (a real one needs 4). */
export const MAX_DEPTH = 64;

const SYNTAX_MESSAGES: Record<string, string> = {
  InvalidSymbol: 'unexpected character',
  InvalidNumberFormat: 'invalid number',
  PropertyNameExpected: 'expected a property name (a string in double quotes)',
  ValueExpected: 'expected a value',
  ColonExpected: 'expected ":"',
  CommaExpected: 'expected ","',
  CloseBraceExpected: 'expected "}"',
  CloseBracketExpected: 'expected "]"',
  EndOfFileExpected: 'expected the end of the document',
  InvalidCommentToken: 'invalid comment',
  UnexpectedEndOfComment: 'unterminated comment',
  UnexpectedEndOfString: 'unterminated string',
  UnexpectedEndOfNumber: 'unterminated number',
  InvalidUnicode: 'invalid unicode escape',
  InvalidEscapeCharacter: 'invalid escape character',
  InvalidCharacter: 'invalid character in string',
};

/** 1-based line and column of a character offset. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let start = 0;
  const end = Math.min(Math.max(offset, 0), text.length);
  for (let i = text.indexOf('\n'); i >= 0 && i < end; i = text.indexOf('\n', i + 1)) {
    line++;
    start = i + 1;
  }
  return { line, column: end - start + 1 };
}

function syntaxError(text: string, offset: number, why: string): PolicyError {
  const { line, column } = lineColumn(text, offset);
  return new PolicyError('POLICY_SYNTAX', `HuJSON syntax error at ${line}:${column}: ${why}`, { line, column });
}

/** Throws when arrays and objects nest deeper than MAX_DEPTH (before any recursion happens). */
function checkDepth(text: string): void {
  const sc = createScanner(text, false);
  let depth = 0;
  for (let kind = sc.scan(); kind !== 17 /* EOF */; kind = sc.scan()) {
    if (kind === 1 /* OpenBrace */ || kind === 3 /* OpenBracket */) {
      if (++depth > MAX_DEPTH) throw syntaxError(text, sc.getTokenOffset(), `nested deeper than ${MAX_DEPTH} levels`);
    } else if (kind === 2 /* CloseBrace */ || kind === 4 /* CloseBracket */) {
      depth = Math.max(0, depth - 1);
    }
  }
}

/** Sections whose keys are names (groups, tags, hosts), shown as `groups["group:eng"]`. */
const NAMED = new Set(['groups', 'hosts', 'tagowners']);

/** Formats a path as `acls[2].dst[0]`, `groups["group:eng"]`. */
export function formatPath(path: JsonPath): string {
  let s = '';
  path.forEach((seg, i) => {
    const named = i === 1 && typeof path[0] === 'string' && NAMED.has(path[0].toLowerCase());
    if (typeof seg === 'number') s += `[${seg}]`;
    else if (!named && /^[A-Za-z_][A-Za-z0-9_]*$/.test(seg)) s += s === '' ? seg : `.${seg}`;
    else s += `[${JSON.stringify(seg)}]`;
  });
  return s;
}

export interface Document {
  value: Json;
  /** line:column of the value at `path`, or of the nearest enclosing value that exists. */
  locate(path: JsonPath): { line: number; column: number } | undefined;
}

function toValue(text: string, node: Node, path: JsonPath): Json {
  switch (node.type) {
    case 'object': {
      const m: JsonObject = new Map();
      for (const prop of node.children ?? []) {
        const [k, v] = prop.children ?? [];
        if (!k || typeof k.value !== 'string') continue; // only on syntax errors, reported already
        if (m.has(k.value)) {
          const { line, column } = lineColumn(text, k.offset);
          throw new PolicyError('POLICY_INVALID', `duplicate key ${JSON.stringify(k.value)}`, { path: formatPath(path), line, column });
        }
        m.set(k.value, v ? toValue(text, v, [...path, k.value]) : null);
      }
      return m;
    }
    case 'array':
      return (node.children ?? []).map((c, i) => toValue(text, c, [...path, i]));
    case 'string':
    case 'number':
    case 'boolean':
      return node.value as string | number | boolean;
    default:
      return null;
  }
}

/** Parses HuJSON text; throws PolicyError POLICY_SYNTAX with line:column. */
export function parseHuJSON(text: string): Document {
  if (typeof text !== 'string') throw new PolicyError('POLICY_SYNTAX', 'the policy must be text');
  checkDepth(text);
  const errors: ParseError[] = [];
  const tree = parseTree(text, errors, { allowTrailingComma: true, disallowComments: false, allowEmptyContent: true });
  const first = errors[0];
  if (first) throw syntaxError(text, first.offset, SYNTAX_MESSAGES[printParseErrorCode(first.error)] ?? 'invalid HuJSON');
  if (!tree) throw new PolicyError('POLICY_SYNTAX', 'the policy is empty (expected a HuJSON object)', { line: 1, column: 1 });
  const value = toValue(text, tree, []);
  return {
    value,
    locate(path) {
      for (let n = path.length; n >= 0; n--) {
        const node = findNodeAtLocation(tree, path.slice(0, n));
        if (node) return lineColumn(text, node.offset);
      }
      return undefined;
    },
  };
}
