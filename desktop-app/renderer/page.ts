import type { BridgeInfo, HushBridge } from '../shared/bridge.ts';

export interface PageContext {
  bridge: HushBridge;
  info: BridgeInfo;
  /**
   * Run `refresh` when a live event whose type starts with one of `prefixes` arrives (debounced),
   * for as long as this page is shown.
   */
  onEvents(prefixes: string[], refresh: () => void): void;
  /** Cleanup to run when the page is left (timers). */
  onLeave(fn: () => void): void;
}

export interface Page {
  id: string;
  title: string;
  /** One line under the title saying what the page is for. */
  lead: string;
  render(root: HTMLElement, ctx: PageContext): void;
}
