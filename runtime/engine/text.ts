import { generateTokens, TextStreamer, type FinishReason, type GenerateOptions, type TokenForwarder } from './generate.ts';
import type { HushTokenizer } from '../model/tokenizer.ts';

export interface TextRequest extends Omit<GenerateOptions, 'stopIds'> {
  prompt?: string;
  /** Token ids instead of a prompt (BOS included if wanted). */
  ids?: number[];
  /** Stop strings: generation ends when the text contains one (it is cut before it). */
  stop?: string[];
  stopIds?: number[];
}

export type TextEvent =
  | { type: 'token'; id: number; text: string; index: number }
  | { type: 'done'; finishReason: FinishReason; ids: number[]; promptIds: number[]; text: string; timings: GenerationTimings };

export interface GenerationTimings {
  /** From the request to the first token. */
  ttftMs: number;
  totalMs: number;
  /** Mean time per generated token after the first. */
  decodeMsPerToken: number;
  tokensPerSecond: number;
}

/**
 * Tokenize, run the generation loop on any forwarder, and stream text deltas. Stop strings are
 * honoured across token boundaries: text after a stop string is never emitted.
 */
export async function* generateText(tokenizer: HushTokenizer, fw: TokenForwarder, req: TextRequest): AsyncGenerator<TextEvent> {
  const t0 = performance.now();
  const promptIds = req.ids ?? tokenizer.encode(req.prompt ?? '');
  const streamer = new TextStreamer((ids) => tokenizer.decode(ids));
  const ids: number[] = [];
  let ttft = 0;
  let finish: FinishReason = 'length';
  let emitted = '';
  const stops = (req.stop ?? []).filter((s) => s.length > 0);
  const holdBack = stops.reduce((a, s) => Math.max(a, s.length - 1), 0);
  let pending = '';
  const it = generateTokens(fw, promptIds, { ...req, stopIds: req.stopIds });
  try {
    for (;;) {
      const r = await it.next();
      if (r.done) { finish = r.value; break; }
      const t = r.value;
      if (t.index === 0) ttft = performance.now() - t0;
      ids.push(t.id);
      pending += streamer.push(t.id);
      if (stops.length) {
        const hit = stops.map((s) => pending.indexOf(s)).filter((i) => i >= 0).sort((a, b) => a - b)[0];
        if (hit !== undefined) {
          const text = pending.slice(0, hit);
          if (text) yield { type: 'token', id: t.id, text, index: t.index };
          emitted += text;
          pending = '';
          finish = 'stop';
          break;
        }
      }
      const safe = pending.length - holdBack;
      const text = safe > 0 ? pending.slice(0, safe) : '';
      pending = safe > 0 ? pending.slice(safe) : pending;
      emitted += text;
      yield { type: 'token', id: t.id, text, index: t.index };
    }
    if (finish !== 'stop' || !stops.length) {
      const rest = pending + streamer.flush();
      if (rest) { emitted += rest; yield { type: 'token', id: ids[ids.length - 1] ?? -1, text: rest, index: ids.length - 1 }; }
    }
  } finally {
    await it.return?.('length');
  }
  const totalMs = performance.now() - t0;
  const decodeMsPerToken = ids.length > 1 ? (totalMs - ttft) / (ids.length - 1) : 0;
  yield {
    type: 'done', finishReason: finish, ids, promptIds, text: emitted,
    timings: { ttftMs: ttft, totalMs, decodeMsPerToken, tokensPerSecond: decodeMsPerToken > 0 ? 1000 / decodeMsPerToken : 0 },
  };
}
