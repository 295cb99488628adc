import * as ort from 'onnxruntime-node';

export { ort };

/** Two intra-op threads beat one and four on the 2-core machines we measured (STACK.md). */
export const DEFAULT_SESSION_OPTIONS: ort.InferenceSession.SessionOptions = {
  intraOpNumThreads: 2,
  interOpNumThreads: 1,
  graphOptimizationLevel: 'all',
  executionMode: 'sequential',
  // Hush keeps many small sessions (one per stage and sub-layer op). Spinning intra-op threads of an
  // idle session steal the cores from the one running next, so threads sleep when idle.
  extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
};

export async function createSession(bytes: Uint8Array, opts: ort.InferenceSession.SessionOptions = {}): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(bytes, { ...DEFAULT_SESSION_OPTIONS, ...opts });
}

export function floatTensor(data: Float32Array, dims: number[]): ort.Tensor {
  return new ort.Tensor('float32', data, dims);
}

export function int64Tensor(values: ArrayLike<number>, dims: number[] = [values.length]): ort.Tensor {
  const b = new BigInt64Array(values.length);
  for (let i = 0; i < values.length; i++) b[i] = BigInt(values[i]);
  return new ort.Tensor('int64', b, dims);
}
