#!/usr/bin/env bash
# wasm-bindgen tests of the peer's browser layer in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
export CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-120}"
# Build outside the namespace (it has no route to the registry), run inside.
cargo test -p peer-wasm --target wasm32-unknown-unknown --no-run
cd peer-wasm # wasm-bindgen-test-runner reads webdriver.json from here
exec ../tests/netns.sh cargo test -p peer-wasm --target wasm32-unknown-unknown --offline
