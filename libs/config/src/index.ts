/** A role's settings that cannot work: every problem found, each naming its variable and the fix. */
export class ConfigError extends Error {
  constructor(
    readonly role: string,
    readonly problems: string[],
  ) {
    super(
      problems.length === 1
        ? problems[0]!
        : `${problems.length} settings of the ${role} are not valid:\n  ${problems.join('\n  ')}`,
    );
    this.name = 'ConfigError';
  }
}

/**
 * Reads settings from an environment, collecting every problem rather than stopping at the first:
 * each reader returns its fallback when its variable is bad, and `done()` throws one ConfigError
 * naming them all (an operator fixes a deployment in one pass, not one variable per restart).
 */
export class Settings {
  private readonly problems: string[] = [];

  constructor(
    readonly env: NodeJS.ProcessEnv,
    private readonly role: string,
  ) {}

  /** A problem of the caller's own finding. */
  problem(message: string): void {
    this.problems.push(message);
  }

  /** The variable's text, or undefined when unset or empty. */
  text(name: string): string | undefined {
    const v = this.env[name];
    return v === undefined || v === '' ? undefined : v;
  }

  /** A variable that must be set; `hint` says where its value comes from. */
  required(name: string, hint = 'run `npm run stack:up` and source .sluice/stack.env, or set it'): string {
    const v = this.text(name);
    if (v === undefined) this.problem(`${name} is not set: ${hint}`);
    return v ?? '';
  }

  /** A whole number of at least `min`, or `fallback` when unset. */
  int(name: string, fallback: number, min = 1): number {
    const raw = this.text(name);
    if (raw === undefined) return fallback;
    const v = Number(raw);
    if (Number.isInteger(v) && v >= min) return v;
    this.problem(`${name}=${raw}: give a whole number of at least ${min}`);
    return fallback;
  }

  /** JSON, or `fallback` when unset; `example` shows its shape in the problem. */
  json<T>(name: string, fallback: T, example: string): T {
    const raw = this.text(name);
    if (raw === undefined) return fallback;
    try {
      return JSON.parse(raw) as T;
    } catch (e) {
      this.problem(`${name} is not JSON (${example}): ${(e as Error).message}`);
      return fallback;
    }
  }

  /** What `parse` makes of the environment, or `fallback` when it throws (its message is the problem). */
  parsed<T>(parse: () => T, fallback: T): T {
    try {
      return parse();
    } catch (e) {
      this.problem((e as Error).message);
      return fallback;
    }
  }

  /** Throws the ConfigError of every problem found, if any. */
  done(): void {
    if (this.problems.length > 0) throw new ConfigError(this.role, [...this.problems]);
  }
}
