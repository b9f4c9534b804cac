#!/usr/bin/env node
/**
 * The `kstate` executable of the installed package (package.json `bin`: dist/connectors/kafka/cli/bin.js).
 * It checks the Node version first (one clear message and exit 1 on an unsupported Node: see
 * framework/node/support.js), then loads the command line (./cli.ts), which runs the command.
 * In the repository, `npm run kstate` preloads the same check and runs cli.ts directly.
 */
import '../../../framework/node/require-cli.js';

await import('./cli.ts');
