/**
 * `hush sim emulate`: real daemons behind the link shaper, measured against the cost model's
 * prediction. Prints the tables (or the JSON report); progress goes to stderr.
 */
import { emulate, formatEmulation, type EmulatedMode, type LinkSetting } from './emulate.ts';
import { ShaperConfigError } from './shaper.ts';

export interface EmulateCommandOptions {
  /** Cloud RTTs to emulate, ms (default 20 and 50). */
  rtt?: number[];
  /** Cloud link bandwidth, Mbit/s, both directions (default 50; 0 = unlimited). */
  bandwidth?: number;
  jitter?: number;
  modes?: EmulatedMode[];
  tokens?: number;
  reps?: number;
  /** A second paired device behind a shaped link of this RTT (ms); absent: none. */
  deviceRtt?: number;
  /** Cap on the coordinator's share of the layers (0..1), so the second device gets stages. */
  coordinatorMaxShare?: number;
  json?: boolean;
}

/** Returns the process exit code: 0 done, 2 bad options, 1 other failure. */
export async function emulateCommand(o: EmulateCommandOptions = {}): Promise<number> {
  try {
    const bandwidthMbit = o.bandwidth ?? 50;
    const settings: LinkSetting[] = (o.rtt?.length ? o.rtt : [20, 50]).map((rttMs) => ({ rttMs, ...(bandwidthMbit > 0 ? { bandwidthMbit } : {}), ...(o.jitter ? { jitterMs: o.jitter } : {}) }));
    const report = await emulate({
      settings, modes: o.modes, tokens: o.tokens, reps: o.reps,
      deviceLink: o.deviceRtt === undefined ? null : { rttMs: o.deviceRtt }, coordinatorMaxShare: o.coordinatorMaxShare,
      log: (line) => process.stderr.write(`hush sim emulate: ${line}\n`),
    });
    process.stdout.write((o.json ? JSON.stringify(report, null, 2) : formatEmulation(report)) + '\n');
    return 0;
  } catch (e) {
    const err = e as Error;
    process.stderr.write(`hush sim emulate: ${err.name}: ${err.message}\n`);
    return e instanceof ShaperConfigError || e instanceof RangeError ? 2 : 1;
  }
}
