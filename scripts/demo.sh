#!/usr/bin/env bash
# The README's main job: set up (npm packages, build, Temporal CLI), then the demo upgrade.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node dist/src/demo/main.js "$@"
