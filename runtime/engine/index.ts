export * from './ort.ts';
export * from './errors.ts';
export * from './stage-runner.ts';
export * from './sampler.ts';
export * from './generate.ts';
export * from './pipeline.ts';
export * from './sublayer-ops.ts';
export * from './text.ts';
