# Peerpage: browser-to-browser pages. `just --list` shows every recipe.

wasm_bindgen_version := "0.2.130"
export CARGO_TERM_COLOR := "never"

# Install the tools the build and the tests need (idempotent).
setup:
    bash .ci/setup

# Build the broker, the publisher's tool and the wasm peer package (into www/pkg).
build: build-wasm
    cargo build --release -p broker -p peerpage

# Build only the wasm peer package into www/pkg.
build-wasm:
    cargo build --profile wasm-release -p peer-wasm --target wasm32-unknown-unknown
    wasm-bindgen --target web --remove-name-section --remove-producers-section \
        --out-dir www/pkg target/wasm32-unknown-unknown/wasm-release/peer_wasm.wasm

# The wasm peer with its test hooks (a page can corrupt the chunks it
# serves, to play a dishonest holder), beside a copy of the app, in
# target/test-www: only the browser tests serve it. Never in www/pkg.
build-wasm-test-hooks:
    cargo build --profile wasm-release -p peer-wasm --features test-hooks --target wasm32-unknown-unknown
    wasm-bindgen --target web --out-dir target/test-www/pkg \
        target/wasm32-unknown-unknown/wasm-release/peer_wasm.wasm
    cp www/index.html www/app.js www/style.css target/test-www/

# Build everything and serve the app at http://127.0.0.1:8080 (and the
# site-delivery demo at /demo/).
serve: build demo
    ./target/release/broker --listen 127.0.0.1:8080 --www www

# The site-delivery demo's files (an image, a 64 MiB download; made once,
# not kept in the repository), indexed with `peerpage manifest`.
demo:
    #!/usr/bin/env bash
    set -euo pipefail
    mkdir -p www/demo/files
    [[ -f www/demo/files/photo.png ]] || python3 www/demo/make_photo.py www/demo/files/photo.png
    [[ -f www/demo/files/big.bin ]] || head -c $((64 << 20)) /dev/urandom > www/demo/files/big.bin
    ./target/release/peerpage manifest www/demo/files

# Run every test: unit, broker integration, wasm in Chromium, browser end to end.
test: build-wasm build-wasm-test-hooks
    cargo test --workspace --exclude peer-wasm
    just test-wasm

# wasm-bindgen tests of the browser layer, in headless Chromium.
test-wasm:
    bash tests/wasm-test.sh

# What CI checks besides tests: formatting and lints, native and wasm32.
lint: lint-js
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy -p peer-wasm -p protocol --target wasm32-unknown-unknown --all-targets -- -D warnings

# Syntax-check the pages' own JavaScript: app.js, the demo, the site test page, disk_worker.js, index.html.
lint-js:
    node tests/lint-js.js

# Fuzz on stable Rust, two targets for FUZZ_SECONDS in all (default 60,
# half each): client message decoding and handling in the broker
# (broker/fuzz), and what a wanter parses from holders, fed to a real
# download (protocol/fuzz). Inputs that find new paths go to
# <crate>/fuzz/target/corpus, crashes to <crate>/fuzz/artifacts.
fuzz:
    #!/usr/bin/env bash
    set -euo pipefail
    half=$(( ${FUZZ_SECONDS:-60} / 2 ))
    # libFuzzer's line per new input and its closing dictionary would drown
    # the log; progress, crashes and the final stats remain.
    quiet() { grep -vE '^(#[0-9]+[[:space:]]+(NEW|REDUCE) |"|###### )'; }
    run() { # crate dir, target, extra libFuzzer flags...
        local dir=$1 target=$2; shift 2
        # The same dependency versions as the main build.
        cp Cargo.lock "$dir/Cargo.lock"
        mkdir -p "$dir/target/corpus/$target"
        cargo fuzz run --fuzz-dir "$dir" --sanitizer none "$target" \
            "$dir/target/corpus/$target" "$dir/corpus/$target" \
            -- -max_total_time="$half" -print_final_stats=1 "$@" 2>&1 | quiet
    }
    run broker/fuzz decode_and_handle -dict=broker/fuzz/decode_and_handle.dict
    # The target bounds what one input may allocate (see its LIVE_LIMIT).
    run protocol/fuzz wanter_parses -rss_limit_mb=1024

# Everything CI runs.
ci: lint test fuzz

# Benchmarks: time to open a share link vs. a plain-JS floor (set
# BENCH_RUNS to change the number of opens, default 20), then file
# transfers: 100 MiB vs. a plain RTCDataChannel (BENCH_FILE_RUNS runs of
# each, default 3) and a swarm of 4 downloaders on one seeder.
bench: build
    cargo run --release -p tests --bin bench_open
    cargo run --release -p tests --bin bench_files

# A site's 64 MiB file through its visitors (peer.fetchUrl) against a plain
# fetch, nginx as a loaded origin (limit_rate 4m), all in one run: a lone
# visitor, 1 to 3 holders online, 4 visitors at once (BENCH_SITE_MIB).
bench-site: build
    cargo run --release -p tests --bin bench_site

# Broker load against PeerJS's server and matchbox_server, all three in one
# run: relay throughput and latency with 1,000 peers, p99 at 20,000 msg/s,
# memory per idle peer at 10,000. Installs the other two on first use.
bench-broker: bench-servers
    cargo build --release -p broker -p loadgen
    ./target/release/bench-broker

# The servers bench-broker compares against, into target/bench-tools.
bench-servers:
    test -f target/bench-tools/peerjs/node_modules/peer/dist/bin/peerjs.js \
        || npm install --prefix target/bench-tools/peerjs --no-save --no-audit --no-fund peer@1.0.2
    test -x target/bench-tools/matchbox/bin/matchbox_server \
        || cargo install matchbox_server --version 0.15.0 --locked --root target/bench-tools/matchbox
