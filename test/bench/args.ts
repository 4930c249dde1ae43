/** Command-line flags shared by the lab benches: `--json` and positive integer options. */
export interface BenchArgs {
  json: boolean;
  /** `--name N` (a positive integer) or `def`; a bad value prints `usage` and exits 2. */
  num(name: string, def: number): number;
}

export function benchArgs(usage: string, argv: readonly string[] = process.argv.slice(2)): BenchArgs {
  return {
    json: argv.includes('--json'),
    num(name, def) {
      const i = argv.indexOf(name);
      if (i < 0) return def;
      const v = Number(argv[i + 1]);
      if (!Number.isInteger(v) || v < 1) {
        console.error(`usage: ${usage}  (bad ${name})`);
        process.exit(2);
      }
      return v;
    },
  };
}
