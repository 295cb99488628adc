import type { DeviceController } from './controller.ts';
import { GenerationAbandonedError, GenerationProtocolError, StopSequenceReached } from './errors.ts';
import type { FinishReason, GenerateRequest, GenerationTimings, GenerationUsage, HushEvent, Mode } from './types.ts';

/**
 * Cuts generated text at the first stop string, across token boundaries. Text that could be the
 * start of a stop string is held back until the next token decides it, so the caller never sees
 * any part of a stop string (OpenAI's behaviour: the stop string is not returned).
 */
export class StopSequenceFilter {
  private held = '';
  private readonly stops: string[];
  private readonly longest: number;
  private stopped = false;

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((s) => s.length > 0);
    this.longest = this.stops.reduce((m, s) => Math.max(m, s.length), 0);
  }

  /** Adds a token's text; returns what may be shown now and whether a stop string was reached. */
  push(text: string): { emit: string; stopped: boolean } {
    if (this.stopped) return { emit: '', stopped: true };
    const buf = this.held + text;
    let cut = -1;
    for (const s of this.stops) {
      const i = buf.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      this.stopped = true;
      this.held = '';
      return { emit: buf.slice(0, cut), stopped: true };
    }
    const keep = this.partialSuffixLength(buf);
    this.held = buf.slice(buf.length - keep);
    return { emit: buf.slice(0, buf.length - keep), stopped: false };
  }

  /** At the end of generation: the held-back text was not a stop string after all. */
  flush(): string {
    const rest = this.stopped ? '' : this.held;
    this.held = '';
    return rest;
  }

  /** Length of the longest suffix of buf that is a proper prefix of some stop string. */
  private partialSuffixLength(buf: string): number {
    for (let k = Math.min(buf.length, this.longest - 1); k > 0; k--) {
      const tail = buf.slice(buf.length - k);
      if (this.stops.some((s) => s.startsWith(tail))) return k;
    }
    return 0;
  }
}

/**
 * What the API streams for one generation, after stop-string filtering:
 * - token: `text` to show now (concatenating every token event's text gives the output) and the
 *   ids of the tokens consumed since the previous token event (more than one when text was held
 *   back at a possible stop string; empty for the final flush of held text).
 */
export type GenerationOutput =
  | { type: 'start'; mode: Mode; promptTokens: number; model?: string; sessionId?: string }
  | { type: 'token'; text: string; ids: number[] }
  | { type: 'event'; event: HushEvent }
  | { type: 'done'; finishReason: FinishReason; usage: GenerationUsage; timings: GenerationTimings };

/** Resolves with p, or rejects with the signal's reason as soon as it aborts (a stuck controller cannot hold a request). */
export function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/**
 * Runs controller.generate() for one HTTP request: applies stop strings, counts tokens, and
 * aborts the controller's generation when `signal` fires (client gone) or a stop string is reached
 * (reason StopSequenceReached). Always ends with exactly one `done`, or throws.
 */
export async function* runGeneration(
  controller: DeviceController,
  req: GenerateRequest,
  signal: AbortSignal,
): AsyncGenerator<GenerationOutput, void, undefined> {
  const started = performance.now();
  const inner = new AbortController();
  const forward = () => inner.abort(signal.reason);
  if (signal.aborted) forward();
  else signal.addEventListener('abort', forward, { once: true });

  const filter = req.stop && req.stop.length > 0 ? new StopSequenceFilter(req.stop) : null;
  const it = controller.generate(req, inner.signal)[Symbol.asyncIterator]();
  let finished = false;
  let promptTokens = 0;
  let completionTokens = 0;
  let pendingIds: number[] = [];
  let firstTokenMs: number | undefined;
  try {
    for (;;) {
      const r = await untilAborted(it.next(), inner.signal);
      if (r.done) throw new GenerationProtocolError('the controller ended the generation without a "done" event');
      const ev = r.value;
      if (ev.type === 'start') {
        promptTokens = ev.promptTokens;
        yield ev;
      } else if (ev.type === 'event') {
        yield ev;
      } else if (ev.type === 'token') {
        completionTokens++;
        firstTokenMs ??= performance.now() - started;
        if (!filter) {
          yield { type: 'token', text: ev.text, ids: [ev.id] };
          continue;
        }
        pendingIds.push(ev.id);
        const { emit, stopped } = filter.push(ev.text);
        // On a stop, the ids of the tokens that made up the stop string are still reported (text '').
        if (emit.length > 0 || stopped) {
          const ids = pendingIds;
          pendingIds = [];
          yield { type: 'token', text: emit, ids };
        }
        if (stopped) {
          finished = true;
          inner.abort(new StopSequenceReached('a stop string was generated'));
          // The controller never sent its own timings; report what the API measured.
          const timings: GenerationTimings = { totalMs: performance.now() - started };
          if (firstTokenMs !== undefined) timings.ttftMs = firstTokenMs;
          yield { type: 'done', finishReason: 'stop', usage: { promptTokens, completionTokens }, timings };
          return;
        }
      } else if (ev.type === 'done') {
        finished = true;
        const rest = filter ? filter.flush() : '';
        if (rest.length > 0 || pendingIds.length > 0) yield { type: 'token', text: rest, ids: pendingIds };
        yield {
          type: 'done',
          finishReason: ev.finishReason,
          usage: { promptTokens: ev.usage.promptTokens || promptTokens, completionTokens: ev.usage.completionTokens },
          timings: ev.timings,
        };
        return;
      } else {
        throw new GenerationProtocolError(`the controller yielded an unknown event type ${JSON.stringify((ev as { type?: unknown }).type)}`);
      }
    }
  } finally {
    signal.removeEventListener('abort', forward);
    if (!finished && !inner.signal.aborted) inner.abort(signal.reason ?? new GenerationAbandonedError('the API stopped reading the generation before it ended'));
    // Let the controller's generator run its cleanup; do not wait on a controller that ignores aborts.
    if (typeof it.return === 'function') Promise.resolve(it.return()).catch(() => {});
  }
}

export interface CollectedGeneration {
  mode?: Mode;
  model?: string;
  text: string;
  tokenIds: number[];
  finishReason: FinishReason;
  usage: GenerationUsage;
  timings: GenerationTimings;
  events: HushEvent[];
}

/** Drains a generation into one result (the non-streaming responses). */
export async function collectGeneration(outputs: AsyncIterable<GenerationOutput>): Promise<CollectedGeneration> {
  let text = '';
  const tokenIds: number[] = [];
  const events: HushEvent[] = [];
  let mode: Mode | undefined;
  let model: string | undefined;
  for await (const o of outputs) {
    if (o.type === 'start') {
      mode = o.mode;
      model = o.model;
    } else if (o.type === 'token') {
      text += o.text;
      tokenIds.push(...o.ids);
    } else if (o.type === 'event') {
      events.push(o.event);
    } else {
      return { mode, model, text, tokenIds, finishReason: o.finishReason, usage: o.usage, timings: o.timings, events };
    }
  }
  throw new GenerationProtocolError('generation ended without a "done" event');
}
