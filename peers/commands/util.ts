import { InvalidArgumentError } from 'commander';

export function intArg(name: string, min = 0, max = Number.MAX_SAFE_INTEGER) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}]`);
    return n;
  };
}

export function floatArg(name: string, min = -Infinity, max = Infinity) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a number in [${min}, ${max}]`);
    return n;
  };
}

export function idsArg(v: string): number[] {
  const ids = v.split(',').map((s) => Number(s.trim()));
  if (ids.length === 0 || ids.some((x) => !Number.isInteger(x) || x < 0)) throw new InvalidArgumentError('ids must be comma-separated non-negative integers');
  return ids;
}

/** Print an error the way every command does, without a stack unless HUSH_DEBUG is set. */
export function fail(e: unknown): never {
  const err = e as Error;
  process.stderr.write(`hush: ${err.name && err.name !== 'Error' ? err.name + ': ' : ''}${err.message}\n`);
  if (process.env.HUSH_DEBUG) process.stderr.write(`${err.stack}\n`);
  process.exit(1);
}
