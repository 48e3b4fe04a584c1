import { ensureTemporalCli, TEMPORAL_CLI_VERSION } from './temporalCli.js';

// Entry point of `npm run temporal:ensure` and of scripts/setup.sh.
const started = Date.now();
ensureTemporalCli().then(
  (binary) => console.error(`setup: Temporal CLI ${TEMPORAL_CLI_VERSION} ready at ${binary} (${Date.now() - started} ms)`),
  (err: Error) => {
    console.error(`setup: ${err.message}`);
    process.exit(2);
  },
);
