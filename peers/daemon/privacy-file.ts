import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The privacy table `hush attack` writes for the embedded model; the app and API serve it. */
export const PRIVACY_REPORT_FILE = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs', 'privacy.json');
