/** Discrete-event simulator of Hush's scheduler: scenarios, baseline planners, reports, benchmarks. */
export { runScenario, summarizeGate, scenarioTruthState, stats, type ScenarioReport, type PlannerReport, type GateSummary, type RunOptions, type SweepPoint, type Timeline } from './run.ts';
export { writeReport, formatReport } from './report.ts';
export { simCommand } from './cli.ts';
export { benchScheduler, benchState } from './bench.ts';
export { loadScenario, parseScenario, scenarioSchema, ScenarioError, type Scenario, type ScenarioInput } from './scenario.ts';
export { PLANNER_NAMES, plannerByName, ringPlan, type Planner, type PlannerName } from './baselines.ts';
export { World, buildPopulation, type WorldStats, type RequestRecord } from './world.ts';
export { Simulator, EventQueue, SimulationError } from './events.ts';
export { Prng } from './prng.ts';
export { DEVICE_PRESETS, ACCESS_PRESETS, LLAMA_7B_CONFIG, manifestFor, profileFromPreset, lanLink, wanLink } from './presets.ts';
