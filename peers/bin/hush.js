#!/usr/bin/env node
// The `hush` command: load TypeScript sources through tsx so no build step is needed.
import { register } from 'tsx/esm/api';
register();
await import('../cli.ts');
