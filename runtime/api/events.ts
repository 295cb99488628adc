import { EventOverflowError } from './errors.ts';
import type { HushEvent } from './types.ts';

/**
 * Fan-out of live events to any number of subscribers (SSE clients), each with a bounded queue.
 * A subscriber that falls more than `maxQueued` events behind is ended with EventOverflowError
 * rather than growing memory without bound; an SSE client then reconnects.
 *
 * subscribe() registers synchronously, so an event published right after the call is delivered.
 */
export class EventHub<T = HushEvent> {
  private readonly subscribers = new Set<Subscription<T>>();

  constructor(readonly maxQueued = 1000) {
    if (!Number.isInteger(maxQueued) || maxQueued < 1) throw new RangeError('EventHub: maxQueued must be a positive integer');
  }

  publish(event: T): void {
    for (const s of this.subscribers) s.push(event);
  }

  /** Ends when `signal` aborts, when the consumer stops iterating, or when the hub closes. */
  subscribe(signal?: AbortSignal): AsyncIterableIterator<T> {
    const sub = new Subscription<T>(this.maxQueued, () => this.subscribers.delete(sub));
    this.subscribers.add(sub);
    if (signal) {
      if (signal.aborted) sub.end();
      else signal.addEventListener('abort', () => sub.end(), { once: true });
    }
    return sub;
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  /** Ends every subscription (their iterations finish normally). */
  close(): void {
    for (const s of [...this.subscribers]) s.end();
  }
}

class Subscription<T> implements AsyncIterableIterator<T> {
  private readonly queue: T[] = [];
  private waiter: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | null = null;
  private ended = false;
  private failure: Error | null = null;

  constructor(
    private readonly maxQueued: number,
    private readonly onEnd: () => void,
  ) {}

  push(value: T): void {
    if (this.ended) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve({ value, done: false });
      return;
    }
    this.queue.push(value);
    if (this.queue.length > this.maxQueued) {
      this.failure = new EventOverflowError(`event subscriber fell more than ${this.maxQueued} events behind and was dropped`);
      this.queue.length = 0;
      this.end();
    }
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.onEnd();
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      if (this.failure) w.reject(this.failure);
      else w.resolve({ value: undefined, done: true });
    }
  }

  next(): Promise<IteratorResult<T>> {
    if (this.queue.length > 0) return Promise.resolve({ value: this.queue.shift() as T, done: false });
    if (this.failure) return Promise.reject(this.failure);
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  return(): Promise<IteratorResult<T>> {
    this.queue.length = 0;
    this.end();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }
}
