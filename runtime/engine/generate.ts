import { SeededRandom, sampleToken, type SamplingOptions } from './sampler.ts';

/**
 * What every execution mode provides to the generation loop: run the prompt, then one token at a
 * time, returning the last position's logits. Local, split, scx and distributed runs all implement it.
 */
export interface TokenForwarder {
  prefill(ids: number[], signal?: AbortSignal): Promise<Float32Array>;
  decode(id: number, signal?: AbortSignal): Promise<Float32Array>;
  close(reason?: unknown): Promise<void>;
}

export interface GenerateOptions extends SamplingOptions {
  maxTokens: number;
  /** Stop ids (the model's eos unless given). */
  stopIds?: number[];
  signal?: AbortSignal;
}

export interface GeneratedToken {
  id: number;
  /** Index among generated tokens. */
  index: number;
  logits: Float32Array;
}

export type FinishReason = 'stop' | 'length';

/**
 * The generation loop: sample from the prefill logits, then decode one token at a time until a stop
 * id or the budget. Yields each token as soon as it is sampled; closes the forwarder at the end,
 * also when the consumer stops early or an error is thrown.
 */
export async function* generateTokens(fw: TokenForwarder, promptIds: number[], opts: GenerateOptions): AsyncGenerator<GeneratedToken, FinishReason> {
  const rng = new SeededRandom(opts.seed ?? 0);
  let failure: unknown;
  try {
    if (opts.maxTokens <= 0) return 'length';
    let logits = await fw.prefill(promptIds, opts.signal);
    for (let i = 0; ; i++) {
      opts.signal?.throwIfAborted();
      const id = sampleToken(logits, opts, rng);
      yield { id, index: i, logits };
      if (opts.stopIds?.includes(id)) return 'stop';
      if (i + 1 >= opts.maxTokens) return 'length';
      logits = await fw.decode(id, opts.signal);
    }
  } catch (e) {
    failure = e;
    throw e;
  } finally {
    await fw.close(failure);
  }
}

/**
 * Turns a growing list of ids into text deltas. Holds back a trailing U+FFFD so a character split
 * across byte-level tokens is emitted whole.
 */
export class TextStreamer {
  private ids: number[] = [];
  private emitted = '';
  constructor(private readonly decode: (ids: number[]) => string) {}
  push(id: number): string {
    this.ids.push(id);
    const text = this.decode(this.ids);
    if (text.endsWith('\uFFFD')) return '';
    const delta = text.slice(this.emitted.length);
    this.emitted = text;
    return delta;
  }
  flush(): string {
    const text = this.decode(this.ids);
    const delta = text.slice(this.emitted.length);
    this.emitted = text;
    return delta;
  }
  get text(): string {
    return this.emitted;
  }
}
