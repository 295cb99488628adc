/**
 * `hush sim run FILE [--json] [--out DIR]`: run a scenario and print a table (or the JSON report);
 * with --out, also write report.json and SVG charts. The lead wires this into the CLI.
 */
import { writeReport, formatReport } from './report.ts';
import { runScenario } from './run.ts';
import { ScenarioError } from './scenario.ts';

/** Returns the process exit code: 0 done, 2 bad scenario, 1 other failure. */
export async function simCommand(file: string, opts: { json?: boolean; out?: string } = {}): Promise<number> {
  try {
    const report = runScenario(file);
    const written = opts.out ? writeReport(report, opts.out) : [];
    if (opts.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    else {
      process.stdout.write(formatReport(report) + '\n');
      if (written.length) process.stdout.write(`wrote ${written.join(', ')}\n`);
    }
    return 0;
  } catch (e) {
    const err = e as Error;
    process.stderr.write(`hush sim: ${err.name}: ${err.message}\n`);
    return e instanceof ScenarioError ? 2 : 1;
  }
}
