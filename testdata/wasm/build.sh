#!/usr/bin/env bash
# build.sh rebuilds every WASM fixture the wasm package tests use from its
# source in this folder, then writes SHA256SUMS. The built .wasm files are
# committed, so the tests need nothing but Go.
#
#   ./build.sh          rebuild in place and rewrite SHA256SUMS
#   ./build.sh --check  rebuild into a temporary folder and compare with the
#                       committed files; exit 1 on any difference
#
# Toolchains: go (GO_VERSION below: other versions build other bytes),
# clang with the wasm32 target and wasm-ld, and wat2wasm from wabt. All three
# build reproducibly: the same sources and toolchains give the same bytes.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

# Fixture outputs, relative to this folder, and the sums file.
FIXTURES=(hello.wasm c/greet_c.wasm hostile/spin.wasm hostile/trap.wasm hostile/grow.wasm hostile/huge.wasm hostile/coldwarm.wasm)
GO_VERSION=go1.26.8

check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

for tool in go clang wat2wasm; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool is not installed" >&2; exit 1; }
done
if [[ "$(go env GOVERSION)" != "$GO_VERSION" ]]; then
  echo "build.sh: warning: go is $(go env GOVERSION); the committed hello.wasm was built with $GO_VERSION and other versions give other bytes" >&2
fi

out="$here"
if (( check )); then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out/c" "$out/hostile"

# The Go guest: a WASI reactor with //go:wasmexport functions.
(cd go && GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 \
  go build -trimpath -buildvcs=false -buildmode=c-shared -o "$out/hello.wasm" .)

# The C guest: no libc, the Extism kernel imports declared by hand.
clang --target=wasm32 -O2 -mbulk-memory -nostdlib -Wl,--no-entry \
  -Wl,--export=greet -Wl,--export=echo -o "$out/c/greet_c.wasm" c/greet.c

# The hostile modules.
for w in spin trap grow huge coldwarm; do
  wat2wasm "hostile/$w.wat" -o "$out/hostile/$w.wasm"
done

if (( check )); then
  (cd "$out" && sha256sum "${FIXTURES[@]}") > "$out/SHA256SUMS"
  if ! diff -u SHA256SUMS "$out/SHA256SUMS"; then
    echo "build.sh --check: the committed fixtures differ from a fresh build (above); run ./build.sh and commit" >&2
    exit 1
  fi
  echo "build.sh --check: every fixture matches its source"
else
  sha256sum "${FIXTURES[@]}" > SHA256SUMS
  echo "build.sh: rebuilt ${#FIXTURES[@]} fixtures; SHA256SUMS rewritten"
fi
