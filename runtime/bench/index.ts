import '../polyfill.ts';
import { benchEngine } from './engine.ts';
import { benchNet } from './net.ts';
import { benchOps } from './ops.ts';
import { benchScheduler } from './scheduler.ts';
import { benchRecovery } from './recovery.ts';
import { benchEmulation } from '../../simulations/emulation/bench.ts';
import { formatTable, type BenchSection } from './report.ts';

/** `npm run bench [-- --only engine,net,...]`: every section prints a table, then one JSON document. */
const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1].split(',') : null;
const suites: Record<string, () => Promise<BenchSection[]>> = {
  engine: benchEngine,
  net: benchNet,
  ops: benchOps,
  scheduler: benchScheduler,
  recovery: benchRecovery,
  emulation: benchEmulation,
};

const sections: BenchSection[] = [];
for (const [name, run] of Object.entries(suites)) {
  if (only && !only.includes(name)) continue;
  for (const s of await run()) {
    sections.push(s);
    console.log(`\n## ${s.title}\n\n${formatTable(s.rows)}\n${(s.notes ?? []).map((n) => `- ${n}`).join('\n')}`);
  }
}
console.log('\n```json\n' + JSON.stringify({ date: new Date().toISOString(), node: process.version, sections }, null, 2) + '\n```');
