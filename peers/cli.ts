import '../runtime/polyfill.ts';
import { Command } from 'commander';
import { registerGenerateCommands } from './commands/generate.ts';
import { registerModelCommands } from './commands/model.ts';
import { registerDaemonCommands } from './commands/daemons.ts';
import { registerDeviceCommands } from './commands/devices.ts';
import { registerAppCommands } from './commands/app.ts';
import { registerAttackCommands } from './commands/attack.ts';
import { registerSimCommands } from './commands/sim.ts';
import { fail } from './commands/util.ts';

const program = new Command();
program.name('hush').description('Hush: federated inference — edge layers on your devices, SCX-encoded middle on a cloud GPU peer').version('0.1.0');
registerGenerateCommands(program);
registerModelCommands(program);
registerDaemonCommands(program);
registerDeviceCommands(program);
registerAppCommands(program);
registerAttackCommands(program);
registerSimCommands(program);

program.parseAsync(process.argv).catch(fail);
