# Everyday tasks. `just` is a convenience: each recipe is one plain cargo command.

# List the recipes.
default:
    @just --list

# Run the demo: bridge + connector + echo agent on SQLite in ./data; prints the URL to open.
demo:
    cargo run -p airlock-demo

# Run the whole test suite (PostgreSQL suites skip unless AIRLOCK_TEST_POSTGRES_URL is set).
test:
    cargo test --workspace

# Run the whole test suite against the local PostgreSQL too.
test-all:
    AIRLOCK_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test AIRLOCK_TEST_REQUIRE_POSTGRES=1 cargo test --workspace

# Formatting and lints, as CI runs them.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Everything CI runs.
ci:
    bash .ci/run

# Schemathesis against a running bridge's /api/openapi.json (as CI runs it; EXAMPLES=200 for longer).
api-fuzz:
    bash .ci/api-fuzz

# The fault-injection suite with its table (PostgreSQL scenarios included).
faults:
    AIRLOCK_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo test -p airlock-connector --test faults -- --nocapture

# The fault harness as a soak: SECS of load and faults (default 300; hours are fine), the table plus
# memory over time. BACKEND=postgres runs it on the local PostgreSQL.
soak SECS="300" BACKEND="sqlite":
    AIRLOCK_SOAK_SECS={{SECS}} AIRLOCK_SOAK_BACKEND={{BACKEND}} AIRLOCK_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo test -p airlock-connector --test faults soak -- --ignored --exact --nocapture

# The benchmarks of DESIGN §6 on SQLite and the local PostgreSQL, release build; writes
# docs/bench/ (results.json, results.md, latency.svg, throughput.svg), which docs/performance.md shows.
bench:
    cargo build --release -p airlock-bridge -p airlock-connector -p airlock-bench
    target/release/airlock-bench --out docs/bench --postgres postgres://postgres@127.0.0.1:5432/test
