export * from './ort.ts';
export * from './errors.ts';
export * from './stage-runner.ts';
export * from './sampler.ts';
export * from './generate.ts';
export * from './pipeline.ts';
