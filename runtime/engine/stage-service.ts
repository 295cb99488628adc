import { StageRunner } from './stage-runner.ts';
import type { StageSpec } from '../model/stage-graphs.ts';
import type { ModelConfig } from '../model/config.ts';
import type { ModelWeights } from '../model/weights.ts';
import { EngineError, ShapeMismatchError, UnknownSessionError } from './errors.ts';

/**
 * Stage execution between trusted devices, as messages. A device serves its stages to the
 * coordinator; the same objects travel in-process and over libp2p. A "host" runs stages wherever
 * they live; the coordinator's trusted path is a chain of hosts.
 */
export type StageRequest =
  | { type: 'open'; session: string; stage: StageSpec; model: string }
  | { type: 'forward'; session: string; stage: string; ids?: Int32Array; hidden?: Float32Array; logitsFrom?: number }
  | { type: 'drop'; session: string };

export type StageReply =
  | { type: 'opened'; stage: string }
  | { type: 'output'; hidden?: Float32Array; logits?: Float32Array; rows: number }
  | { type: 'dropped' }
  | { type: 'error'; name: string; message: string };

export class StageRemoteError extends EngineError {
  override name = 'StageRemoteError';
  constructor(readonly remoteName: string, message: string) {
    super(`${remoteName}: ${message}`);
  }
}

export function stageKey(s: StageSpec): string {
  return `${s.embed ? 'e' : ''}${s.start}-${s.end}${s.head ? 'h' : ''}`;
}

/** One place stages run: this process or a remote device. */
export interface StageHost {
  readonly label: string;
  open(session: string, stage: StageSpec, signal?: AbortSignal): Promise<void>;
  forward(session: string, stage: StageSpec, input: { ids?: number[]; hidden?: Float32Array }, signal?: AbortSignal): Promise<{ hidden?: Float32Array; logits?: Float32Array }>;
  drop(session: string): Promise<void>;
}

const SESSION_RE = /^[A-Za-z0-9_-]{1,64}$/;

/** Serves stages of one model on this device: builds runners on demand, one KV cache per session. */
export class StageServer {
  private readonly runners = new Map<string, Promise<StageRunner>>();
  /** Sessions and the stages each opened (a session is owned by one coordinator). */
  private readonly sessions = new Map<string, Set<string>>();

  constructor(readonly config: ModelConfig, private readonly weights: ModelWeights, readonly modelName: string,
    private readonly limits: { maxSessions: number } = { maxSessions: 64 }) {}

  runner(stage: StageSpec): Promise<StageRunner> {
    const key = stageKey(stage);
    let r = this.runners.get(key);
    if (!r) {
      r = StageRunner.create(this.config, this.weights, stage);
      r.catch(() => this.runners.delete(key));
      this.runners.set(key, r);
    }
    return r;
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Which stages and KV lengths a session holds here (audits, the app's "who runs what"). */
  describe(): { session: string; stages: string[] }[] {
    return [...this.sessions].map(([session, st]) => ({ session, stages: [...st] }));
  }

  async handle(raw: unknown): Promise<StageReply> {
    try {
      return await this.dispatch(validateStageRequest(raw, this.config));
    } catch (e) {
      const err = e as Error;
      return { type: 'error', name: err.name || 'Error', message: err.message };
    }
  }

  private async dispatch(m: StageRequest): Promise<StageReply> {
    switch (m.type) {
      case 'open': {
        if (m.model !== this.modelName) throw new EngineError(`this device serves ${this.modelName}, not ${m.model}`);
        const s = m.stage;
        if (!(s.start >= 0 && s.end <= this.config.numLayers && s.start <= s.end)) throw new ShapeMismatchError(`stage layers [${s.start}, ${s.end}) outside the model`);
        if (!this.sessions.has(m.session) && this.sessions.size >= this.limits.maxSessions) throw new EngineError(`device is at its limit of ${this.limits.maxSessions} sessions`);
        const r = await this.runner(s);
        r.openSession(m.session);
        const set = this.sessions.get(m.session) ?? new Set<string>();
        set.add(stageKey(s));
        this.sessions.set(m.session, set);
        return { type: 'opened', stage: stageKey(s) };
      }
      case 'forward': {
        const set = this.sessions.get(m.session);
        if (!set || !set.has(m.stage)) throw new UnknownSessionError(m.session);
        const r = await this.runners.get(m.stage)!;
        const out = await r.forward(m.session, { ids: m.ids ? Array.from(m.ids) : undefined, hidden: m.hidden }, { logitsFrom: m.logitsFrom });
        return { type: 'output', hidden: out.hidden, logits: out.logits, rows: out.rows };
      }
      case 'drop': {
        await this.drop(m.session);
        return { type: 'dropped' };
      }
    }
  }

  async drop(session: string): Promise<void> {
    const set = this.sessions.get(session);
    if (!set) return;
    for (const key of set) (await this.runners.get(key))?.dropSession(session);
    this.sessions.delete(session);
  }

  async release(): Promise<void> {
    for (const s of [...this.sessions.keys()]) await this.drop(s);
    for (const r of this.runners.values()) await (await r).release();
    this.runners.clear();
  }
}

/** Check a stage request from the network before use. */
export function validateStageRequest(raw: unknown, c: ModelConfig): StageRequest {
  const bad = (why: string): never => { throw new ShapeMismatchError(`malformed stage request: ${why}`); };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) bad('not an object');
  const m = raw as Record<string, unknown>;
  if (typeof m.session !== 'string' || !SESSION_RE.test(m.session)) bad('session must be 1-64 characters of [A-Za-z0-9_-]');
  if (m.type === 'open') {
    const s = m.stage as Record<string, unknown>;
    if (typeof s !== 'object' || s === null || typeof s.embed !== 'boolean' || typeof s.head !== 'boolean' ||
      !Number.isInteger(s.start) || !Number.isInteger(s.end)) bad('stage must be {embed, start, end, head}');
    if (typeof m.model !== 'string') bad('model must be a string');
  } else if (m.type === 'forward') {
    if (typeof m.stage !== 'string' || m.stage.length > 32) bad('stage must be a stage key');
    if (m.ids !== undefined && !(m.ids instanceof Int32Array)) bad('ids must be an Int32Array');
    if (m.hidden !== undefined && !(m.hidden instanceof Float32Array)) bad('hidden must be a Float32Array');
    if ((m.ids === undefined) === (m.hidden === undefined)) bad('exactly one of ids or hidden');
    const rows = m.ids ? (m.ids as Int32Array).length : (m.hidden as Float32Array).length / c.hiddenSize;
    if (rows > c.maxPositionEmbeddings) bad(`${rows} rows exceed the context of ${c.maxPositionEmbeddings}`);
    if (m.logitsFrom !== undefined && (!Number.isInteger(m.logitsFrom) || (m.logitsFrom as number) < 0)) bad('logitsFrom must be a non-negative integer');
  } else if (m.type !== 'drop') {
    bad(`unknown type ${JSON.stringify(m.type)}`);
  }
  return m as unknown as StageRequest;
}

/** Stages in this process. */
export class LocalStageHost implements StageHost {
  readonly label = 'this device';
  constructor(private readonly server: StageServer) {}
  async open(session: string, stage: StageSpec): Promise<void> {
    expectReply(await this.server.handle({ type: 'open', session, stage, model: this.server.modelName }), 'opened');
  }
  async forward(session: string, stage: StageSpec, input: { ids?: number[]; hidden?: Float32Array }): Promise<{ hidden?: Float32Array; logits?: Float32Array }> {
    const r = (await this.server.runner(stage));
    const out = await r.forward(session, input);
    return { hidden: out.hidden, logits: out.logits };
  }
  async drop(session: string): Promise<void> {
    await this.server.drop(session);
  }
}

/** Stages on another device, through any request/reply transport (libp2p in the daemons). */
export class RemoteStageHost implements StageHost {
  constructor(readonly label: string, private readonly request: (m: StageRequest, signal?: AbortSignal) => Promise<StageReply>, private readonly modelName: string) {}
  async open(session: string, stage: StageSpec, signal?: AbortSignal): Promise<void> {
    expectReply(await this.request({ type: 'open', session, stage, model: this.modelName }, signal), 'opened');
  }
  async forward(session: string, stage: StageSpec, input: { ids?: number[]; hidden?: Float32Array }, signal?: AbortSignal) {
    const r = expectReply(await this.request({
      type: 'forward', session, stage: stageKey(stage),
      ...(input.ids ? { ids: Int32Array.from(input.ids) } : { hidden: input.hidden }),
    }, signal), 'output');
    return { hidden: r.hidden, logits: r.logits };
  }
  async drop(session: string): Promise<void> {
    try { await this.request({ type: 'drop', session }); } catch { /* the device may be gone; its sessions die with it */ }
  }
}

function expectReply<T extends StageReply['type']>(r: StageReply, type: T): Extract<StageReply, { type: T }> {
  if (r.type === 'error') throw new StageRemoteError(r.name, r.message);
  if (r.type !== type) throw new EngineError(`stage host answered ${r.type}, expected ${type}`);
  return r as Extract<StageReply, { type: T }>;
}
