#!/usr/bin/env node
// The dg-upgrade CLI; the TypeScript build (npm run build) puts its code under dist/.
import { main } from '../dist/src/client/cli.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    console.error(`dg-upgrade: unexpected error: ${err?.stack ?? err}`);
    process.exitCode = 1;
  },
);
