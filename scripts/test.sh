#!/usr/bin/env bash
# The whole vcdn test suite, from a fresh machine: formatting, lints, the
# TLS-provider check, then every unit, integration and crash test.
#
#   scripts/test.sh
#
# It installs what a fresh machine lacks (system packages with apt-get,
# cargo-nextest if missing) and needs only Rust (cargo) to begin with.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '\n==> %s\n' "$*" >&2; }

# --- what the tests need that a fresh machine may lack -----------------------
missing=()
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
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
