import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { simCommand } from '../../simulations/cli.ts';
import { emulateCommand } from '../../simulations/emulation/cli.ts';
import { floatArg, intArg } from './util.ts';

function rttList(v: string, prev: number[] = []): number[] {
  const xs = v.split(',').map((s) => Number(s.trim()));
  if (!xs.length || xs.some((x) => !Number.isFinite(x) || x < 0 || x > 2000)) throw new InvalidArgumentError('rtt must be milliseconds in [0, 2000] (comma-separated or repeated)');
  return [...prev, ...xs];
}

function modeList(v: string): ('scx' | 'split')[] {
  const xs = v.split(',').map((s) => s.trim());
  if (!xs.length || xs.some((x) => x !== 'scx' && x !== 'split')) throw new InvalidArgumentError('modes must be scx and/or split, comma-separated');
  return xs as ('scx' | 'split')[];
}

/** `hush sim run` (the discrete-event simulator) and `hush sim emulate` (real daemons behind a link shaper). */
export function registerSimCommands(program: Command): void {
  const sim = program.command('sim').description('simulate the scheduler and network, or emulate them with real daemons');
  sim.command('run <file>')
    .description('run a scenario (simulations/scenarios/*.json) and print a report')
    .option('--json', 'print the report as JSON')
    .option('--out <dir>', 'also write report.json and SVG charts to DIR')
    .action(async (file: string, o: { json?: boolean; out?: string }) => {
      process.exitCode = await simCommand(file, { json: !!o.json, out: o.out });
    });
  sim.command('emulate')
    .description('start real daemons on loopback, shape the link to the cloud peer (RTT, bandwidth), and compare measured latency with the cost model')
    .option('--rtt <ms>', 'cloud round trip, ms (repeatable or comma-separated; default 20,50)', rttList)
    .option('--bandwidth <mbit>', 'cloud link bandwidth, Mbit/s each way (0 = unlimited)', floatArg('bandwidth', 0, 100000), 50)
    .option('--jitter <ms>', 'mean extra one-way delay, ms (exponential)', floatArg('jitter', 0, 1000))
    .option('--modes <list>', 'scx and/or split', modeList)
    .option('--tokens <n>', 'tokens per generation', intArg('tokens', 2, 256), 32)
    .option('--reps <n>', 'measured generations per setting and mode', intArg('reps', 1, 20), 2)
    .option('--device-rtt <ms>', 'also pair a second device behind a shaped link of this RTT', floatArg('device-rtt', 0, 1000))
    .option('--coordinator-max-share <fraction>', "most of the model's layers the coordinator may hold (moves stages to the second device)", floatArg('coordinator-max-share', 0, 1))
    .option('--json', 'print the report as JSON')
    .action(async (o: { rtt?: number[]; bandwidth: number; jitter?: number; modes?: ('scx' | 'split')[]; tokens: number; reps: number; deviceRtt?: number; coordinatorMaxShare?: number; json?: boolean }) => {
      process.exitCode = await emulateCommand({
        rtt: o.rtt, bandwidth: o.bandwidth, jitter: o.jitter, modes: o.modes, tokens: o.tokens, reps: o.reps,
        deviceRtt: o.deviceRtt, coordinatorMaxShare: o.coordinatorMaxShare, json: !!o.json,
      });
    });
}
