import type { HushBridge } from '../shared/bridge.ts';

declare global {
  interface Window {
    /** Set by the Electron preload (contextBridge) or by dev-bridge.ts in a browser. */
    hush?: HushBridge;
  }
}
