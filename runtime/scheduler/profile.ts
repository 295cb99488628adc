/**
 * Device profiles: turning a micro-benchmark into rates the cost model uses, and caching the
 * measurement in the daemon's home directory so a restart does not re-measure every time.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, platform, arch } from 'node:os';
import { join } from 'node:path';
import { ProfileError } from './errors.ts';
import type { DeviceProfile, Measured } from './types.ts';

export const PROFILE_FILE = 'device-profile.json';
const PROFILE_VERSION = 1;

/** What identifies the hardware a measurement belongs to; a change invalidates the cache. */
export interface HostFingerprint { platform: string; arch: string; cpuModel: string; cpus: number; totalMemBytes: number }

export function hostFingerprint(): HostFingerprint {
  const c = cpus();
  return { platform: platform(), arch: arch(), cpuModel: c[0]?.model ?? 'unknown', cpus: c.length, totalMemBytes: totalmem() };
}

export interface CachedProfile {
  measured: Measured;
  measuredAt: number;
  host: HostFingerprint;
  /** True when read from the cache, false when just measured. */
  fromCache: boolean;
}

function finitePos(v: unknown): v is number { return typeof v === 'number' && Number.isFinite(v) && v > 0; }

/** Check a measurement; throws ProfileError naming the bad field. */
export function checkMeasured(m: unknown): Measured {
  if (typeof m !== 'object' || m === null) throw new ProfileError('measurement must be an object');
  const x = m as Record<string, unknown>;
  const ref = x.reference as Record<string, unknown> | undefined;
  const bad: string[] = [];
  for (const k of ['memoryBytes', 'prefillTokens', 'prefillMsPerLayer', 'decodeMsPerLayer']) if (!finitePos(x[k])) bad.push(k);
  if (!(typeof x.decodeContext === 'number' && Number.isFinite(x.decodeContext) && x.decodeContext >= 0)) bad.push('decodeContext');
  if (!ref || !finitePos(ref.flopsPerToken) || !(typeof ref.flopsPerTokenPerContext === 'number' && ref.flopsPerTokenPerContext >= 0) || !finitePos(ref.bytes)) bad.push('reference');
  if (x.overheadMsPerLayer != null && !(typeof x.overheadMsPerLayer === 'number' && Number.isFinite(x.overheadMsPerLayer) && x.overheadMsPerLayer >= 0)) bad.push('overheadMsPerLayer');
  if (bad.length) throw new ProfileError(`measurement has bad or missing fields: ${bad.join(', ')}`);
  const ov = (x.overheadMsPerLayer as number | undefined) ?? 0;
  if (ov >= (x.prefillMsPerLayer as number) || ov >= (x.decodeMsPerLayer as number)) {
    throw new ProfileError(`overheadMsPerLayer (${ov}) must be below the measured layer times`);
  }
  return m as Measured;
}

/**
 * Rates from a measurement: the timed layer's FLOPs over the time left after the per-layer overhead.
 * A profile measured on one model predicts others because prefill is compute-bound and decode streams
 * the weights (FLOPs per byte are the same for every dense fp32 layer).
 */
export function deviceProfileFromMeasured(id: string, m: Measured, extra: Partial<DeviceProfile> = {}): DeviceProfile {
  checkMeasured(m);
  const ov = m.overheadMsPerLayer ?? 0;
  const N = m.prefillTokens, c = m.decodeContext, r = m.reference;
  const prefillFlops = N * r.flopsPerToken + r.flopsPerTokenPerContext * N * (N + 1) / 2;
  const decodeFlops = r.flopsPerToken + r.flopsPerTokenPerContext * c;
  return {
    id,
    memoryBytes: m.memoryBytes,
    prefillFlopsPerSec: prefillFlops / ((m.prefillMsPerLayer - ov) / 1000),
    decodeFlopsPerSec: decodeFlops / ((m.decodeMsPerLayer - ov) / 1000),
    layerOverheadMs: ov,
    ...extra,
  };
}

function sameHost(a: HostFingerprint, b: HostFingerprint): boolean {
  return a.platform === b.platform && a.arch === b.arch && a.cpuModel === b.cpuModel && a.cpus === b.cpus && a.totalMemBytes === b.totalMemBytes;
}

/**
 * Return the cached measurement in `home` when it is younger than `maxAgeMs` and from this hardware;
 * otherwise run `measure`, store the result (atomically, mode 0600) and return it. A corrupt or
 * foreign cache file is replaced, never fatal.
 */
export async function loadOrMeasureProfile(
  home: string,
  measure: () => Promise<Measured>,
  maxAgeMs: number,
  opts: { now?: () => number; host?: HostFingerprint } = {},
): Promise<CachedProfile> {
  if (!(maxAgeMs >= 0)) throw new ProfileError(`maxAgeMs must be >= 0 (got ${maxAgeMs})`);
  const now = opts.now ?? Date.now;
  const host = opts.host ?? hostFingerprint();
  const file = join(home, PROFILE_FILE);
  try {
    const raw = JSON.parse(readFileSync(file, 'utf8')) as { version?: number; measuredAt?: number; host?: HostFingerprint; measured?: unknown };
    if (raw.version === PROFILE_VERSION && typeof raw.measuredAt === 'number' && raw.host && sameHost(raw.host, host)) {
      const age = now() - raw.measuredAt;
      if (age >= 0 && age <= maxAgeMs) return { measured: checkMeasured(raw.measured), measuredAt: raw.measuredAt, host, fromCache: true };
    }
  } catch {
    // Missing, unreadable or invalid: measure again.
  }
  const measured = checkMeasured(await measure());
  const measuredAt = now();
  mkdirSync(home, { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify({ version: PROFILE_VERSION, measuredAt, host, measured }, null, 2) + '\n', { mode: 0o600 });
  renameSync(tmp, file);
  return { measured, measuredAt, host, fromCache: false };
}
