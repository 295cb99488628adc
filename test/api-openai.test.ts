import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientDisconnectedError, NonLoopbackHostError, startControlServer, startOpenAIServer, StopSequenceReached, type RunningServer } from '../runtime/api/index.ts';
import { readSse, SCRIPT, SCRIPT_TEXT, ScriptedController, withTimeout } from './api-double.ts';

const API_KEY = 'sk-hush-' + '7'.repeat(40);

let ctl: ScriptedController;
let server: RunningServer;
let client: OpenAI;

beforeAll(async () => {
  ctl = new ScriptedController();
  server = await startOpenAIServer({ controller: ctl, apiKey: API_KEY, port: 0 });
  client = new OpenAI({ apiKey: API_KEY, baseURL: `${server.url}/v1`, maxRetries: 0, timeout: 10_000 });
});
afterAll(async () => {
  await server?.close();
});

function post(path: string, body: unknown, key = API_KEY): Promise<Response> {
  return fetch(`${server.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

describe('OpenAI endpoint through the official client', () => {
  it('lists models', async () => {
    const page = await client.models.list();
    expect(page.data).toEqual([{ id: 'tiny-llama', object: 'model', created: 1_700_000_000, owned_by: 'hush' }]);
  });

  it('refuses a wrong key with 401 AuthenticationError', async () => {
    const bad = new OpenAI({ apiKey: 'sk-wrong-key-0000000000', baseURL: `${server.url}/v1`, maxRetries: 0 });
    const err = await bad.models.list().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((err as InstanceType<typeof OpenAI.AuthenticationError>).status).toBe(401);
    expect((err as InstanceType<typeof OpenAI.AuthenticationError>).code).toBe('invalid_api_key');
  });

  it('answers a non-streaming chat completion, passing the messages and sampling through', async () => {
    const r = await client.chat.completions.create({
      model: 'tiny-llama',
      messages: [
        { role: 'developer', content: 'Be brief.' },
        { role: 'user', content: [{ type: 'text', text: 'Say ' }, { type: 'text', text: 'the pangram' }] },
      ],
      max_tokens: 20,
      temperature: 0.7,
      top_p: 0.9,
      seed: 42,
      hush_mode: 'split',
    } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming);
    expect(r.object).toBe('chat.completion');
    expect(r.id).toMatch(/^chatcmpl-/);
    expect(r.model).toBe('tiny-llama');
    expect(r.choices).toEqual([{ index: 0, message: { role: 'assistant', content: SCRIPT_TEXT, refusal: null }, logprobs: null, finish_reason: 'stop' }]);
    expect(r.usage).toEqual({ prompt_tokens: 7, completion_tokens: 10, total_tokens: 17 });
    expect(ctl.requests.at(-1)).toEqual({
      model: 'tiny-llama',
      mode: 'split',
      maxTokens: 20,
      temperature: 0.7,
      topP: 0.9,
      seed: 42,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Say the pangram' },
      ],
    });
  });

  it('streams a chat completion with the exact text, finish reason and usage', async () => {
    const stream = await client.chat.completions.create({
      model: 'tiny-llama',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 6,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    const finishes: (string | null)[] = [];
    let usage: OpenAI.CompletionUsage | null | undefined;
    let roleSeen = false;
    for await (const chunk of stream) {
      expect(chunk.object).toBe('chat.completion.chunk');
      if (chunk.usage) usage = chunk.usage;
      for (const ch of chunk.choices) {
        if (ch.delta.role === 'assistant') roleSeen = true;
        text += ch.delta.content ?? '';
        if (ch.finish_reason) finishes.push(ch.finish_reason);
      }
    }
    expect(roleSeen).toBe(true);
    expect(text).toBe(SCRIPT.slice(0, 6).join(''));
    expect(finishes).toEqual(['length']);
    expect(usage).toEqual({ prompt_tokens: 7, completion_tokens: 6, total_tokens: 13 });
    // No hush_mode: the controller chooses (this double: local, since no cloud is configured).
    expect(ctl.requests.at(-1)?.mode).toBeUndefined();
  });

  it('streams a completion with the exact text', async () => {
    const stream = await client.completions.create({ model: 'tiny-llama', prompt: 'Once', max_tokens: 50, stream: true });
    let text = '';
    let finish: string | null = null;
    for await (const chunk of stream) {
      expect(chunk.object).toBe('text_completion');
      text += chunk.choices[0].text;
      finish = chunk.choices[0].finish_reason ?? finish;
    }
    expect(text).toBe(SCRIPT_TEXT);
    expect(finish).toBe('stop');
    expect(ctl.requests.at(-1)).toMatchObject({ prompt: 'Once', maxTokens: 50 });
  });

  it('answers a non-streaming completion and honours stop strings (not returned, generation aborted)', async () => {
    const aborted = ctl.nextAbortAfter(ctl.abortReasons.length);
    const r = await client.completions.create({ model: 'tiny-llama', prompt: ['Once'], max_tokens: 50, stop: [' lazy', 'over the'] });
    expect(r.object).toBe('text_completion');
    expect(r.choices).toEqual([{ text: ' The quick brown fox jumps ', index: 0, logprobs: null, finish_reason: 'stop' }]);
    expect(r.usage?.completion_tokens).toBe(7);
    expect(await withTimeout(aborted, 2000, 'controller abort')).toBeInstanceOf(StopSequenceReached);
  });

  it('streams with a stop string split across tokens', async () => {
    const stream = await client.chat.completions.create({ model: 'tiny-llama', messages: [{ role: 'user', content: 'x' }], stop: 'ck br', stream: true });
    let text = '';
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(text).toBe(' The qui');
    expect(finish).toBe('stop');
  });

  it('refuses unknown models (404 model_not_found) and unsupported options (400)', async () => {
    const e404 = await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    expect(e404).toBeInstanceOf(OpenAI.NotFoundError);
    expect((e404 as InstanceType<typeof OpenAI.NotFoundError>).code).toBe('model_not_found');

    const n2 = await client.chat.completions.create({ model: 'tiny-llama', messages: [{ role: 'user', content: 'x' }], n: 2 }).catch((e: unknown) => e);
    expect(n2).toBeInstanceOf(OpenAI.BadRequestError);
    expect((n2 as Error).message).toMatch(/only n=1 is supported/);

    const tool = await client.chat.completions
      .create({ model: 'tiny-llama', messages: [{ role: 'tool', content: 'x', tool_call_id: 'a' }] })
      .catch((e: unknown) => e);
    expect(tool).toBeInstanceOf(OpenAI.BadRequestError);
    expect((tool as Error).message).toMatch(/tools are not supported/);

    const json = await client.chat.completions
      .create({ model: 'tiny-llama', messages: [{ role: 'user', content: 'x' }], response_format: { type: 'json_object' } })
      .catch((e: unknown) => e);
    expect(json).toBeInstanceOf(OpenAI.BadRequestError);
    expect((json as Error).message).toMatch(/response_format/);

    const temp = await client.completions.create({ model: 'tiny-llama', prompt: 'x', temperature: 3 }).catch((e: unknown) => e);
    expect(temp).toBeInstanceOf(OpenAI.BadRequestError);
    expect((temp as Error).message).toMatch(/temperature/);
  });

  it('cancels the generation when the client aborts a stream', async () => {
    ctl.endless = true;
    ctl.tokenDelayMs = 5;
    try {
      const aborted = ctl.nextAbortAfter(ctl.abortReasons.length);
      const ac = new AbortController();
      const stream = await client.chat.completions.create(
        { model: 'tiny-llama', messages: [{ role: 'user', content: 'go on forever' }], max_tokens: 100_000, stream: true },
        { signal: ac.signal },
      );
      let chunks = 0;
      // The client ends the iteration (quietly or with an abort error) once its signal fires.
      try {
        for await (const chunk of stream) {
          if (chunk.choices[0]?.delta.content) chunks++;
          if (chunks === 3) ac.abort();
        }
      } catch (e) {
        expect((e as Error).name).toMatch(/Abort/);
      }
      expect(chunks).toBe(3);
      expect(await withTimeout(aborted, 3000, 'controller abort')).toBeInstanceOf(ClientDisconnectedError);
    } finally {
      ctl.endless = false;
      ctl.tokenDelayMs = 0;
    }
  });
});

describe('OpenAI endpoint wire format', () => {
  it('sends chat chunks exactly as OpenAI does, ending with data: [DONE]', async () => {
    const res = await post('/v1/chat/completions', { model: 'tiny-llama', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, stream: true, hush_mode: 'scx' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    expect(res.headers.get('x-hush-mode')).toBe('scx');
    const { raw } = await readSse(res);
    const blocks = raw.split('\n\n');
    expect(blocks.at(-1)).toBe('');
    expect(blocks.at(-2)).toBe('data: [DONE]');
    const chunks = blocks.slice(0, -2).map((b) => {
      expect(b.startsWith('data: ')).toBe(true);
      return JSON.parse(b.slice(6));
    });
    const id = chunks[0].id;
    expect(id).toMatch(/^chatcmpl-/);
    const head = { id, object: 'chat.completion.chunk', created: chunks[0].created, model: 'tiny-llama', system_fingerprint: null };
    expect(chunks).toEqual([
      { ...head, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] },
      { ...head, choices: [{ index: 0, delta: { content: ' The' }, logprobs: null, finish_reason: null }] },
      { ...head, choices: [{ index: 0, delta: { content: ' quick' }, logprobs: null, finish_reason: null }] },
      { ...head, choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: 'length' }] },
    ]);
  });

  it('sends completion chunks in the text_completion format', async () => {
    const res = await post('/v1/completions', { model: 'tiny-llama', prompt: 'x', max_tokens: 1, stream: true });
    const { raw } = await readSse(res);
    const blocks = raw.split('\n\n').filter(Boolean);
    expect(blocks.at(-1)).toBe('data: [DONE]');
    const chunks = blocks.slice(0, -1).map((b) => JSON.parse(b.slice(6)));
    expect(chunks.map((c) => c.choices)).toEqual([
      [{ index: 0, text: ' The', logprobs: null, finish_reason: null }],
      [{ index: 0, text: '', logprobs: null, finish_reason: 'length' }],
    ]);
    expect(chunks[0].object).toBe('text_completion');
    expect(chunks[0].id).toMatch(/^cmpl-/);
  });

  it('reports a failure before the first token as an HTTP error in OpenAI shape', async () => {
    ctl.generateFailure = Object.assign(new Error('no cloud peer is reachable'), { name: 'UnavailableError', statusCode: 503 });
    try {
      const res = await post('/v1/chat/completions', { model: 'tiny-llama', messages: [{ role: 'user', content: 'x' }], stream: true });
      expect(res.status).toBe(503);
      expect(await res.json()).toEqual({ error: { message: 'no cloud peer is reachable', type: 'server_error', param: null, code: 'unavailable' } });
    } finally {
      ctl.generateFailure = null;
    }
  });

  it('refuses to listen beyond loopback unless asked to', async () => {
    await expect(startOpenAIServer({ controller: ctl, apiKey: API_KEY, host: '0.0.0.0' })).rejects.toBeInstanceOf(NonLoopbackHostError);
  });
});

describe('OpenAI endpoint mounted on the control server', () => {
  it('uses its own key: /v1 takes the API key only, /api/v1 the control token only', async () => {
    const token = 'c'.repeat(64);
    const both = await startControlServer({ controller: ctl, token, openai: { apiKey: API_KEY } });
    try {
      const oc = new OpenAI({ apiKey: API_KEY, baseURL: `${both.url}/v1`, maxRetries: 0 });
      const r = await oc.chat.completions.create({ model: 'tiny-llama', messages: [{ role: 'user', content: 'x' }], max_tokens: 3 });
      expect(r.choices[0].message.content).toBe(SCRIPT.slice(0, 3).join(''));

      const withToken = new OpenAI({ apiKey: token, baseURL: `${both.url}/v1`, maxRetries: 0 });
      expect(await withToken.models.list().catch((e: unknown) => e)).toBeInstanceOf(OpenAI.AuthenticationError);
      const ctlWithKey = await fetch(`${both.url}/api/v1/identity`, { headers: { authorization: `Bearer ${API_KEY}` } });
      expect(ctlWithKey.status).toBe(401);
      const ctlWithToken = await fetch(`${both.url}/api/v1/identity`, { headers: { authorization: `Bearer ${token}` } });
      expect(ctlWithToken.status).toBe(200);
    } finally {
      await both.close();
    }
  });
});
