#!/usr/bin/env bash
# The whole vcdn test suite, from a fresh machine: formatting, lints, the
# TLS-provider check, then every unit, integration and crash test, then the
# end-to-end tests of the web page in a real browser (tests/browser).
#
#   scripts/test.sh
#
# It installs what a fresh machine lacks (system packages with apt-get,
# Debian's Chromium, the browser tests' npm packages, cargo-nextest if
# missing) and needs only Rust (cargo) to begin with.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '\n==> %s\n' "$*" >&2; }

# --- what the tests need that a fresh machine may lack -----------------------
missing=()
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
# The browser tests drive Debian's Chromium (no browser download).
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  sudo=()
  if ((EUID != 0)); then sudo=(sudo); fi
  "${sudo[@]}" apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi

log "cargo fmt --check"
cargo fmt --all --check

log "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "TLS uses ring only (no aws-lc-rs in the dependency tree)"
if cargo tree --workspace --locked -i aws-lc-rs >/dev/null 2>&1; then
  cargo tree --workspace --locked -i aws-lc-rs >&2
  echo "aws-lc-rs is in the dependency tree; keep rustls on ring" >&2
  exit 1
fi

log "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
  # nextest does not run doctests.
  cargo test --workspace --locked --doc
else
  cargo test --workspace --locked --no-fail-fast
fi

log "browser tests (Chromium, headless)"
# Node's test runner with --test-concurrency needs Node 20.10 or later.
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 10) ? 0 : 1)'; then
  echo "the browser tests need Node.js 20.10 or later (found $(node --version))" >&2
  exit 1
fi
if [[ ! -d tests/browser/node_modules ]]; then
  (cd tests/browser && npm ci --no-audit --no-fund)
fi
cargo build -p vcdn --locked
target_dir="$(realpath "${CARGO_TARGET_DIR:-target}")"
(cd tests/browser && VCDN_BIN="$target_dir/debug/vcdn" timeout 900 node --test --test-concurrency=1)
