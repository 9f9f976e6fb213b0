# pln — common tasks. Nothing in the README's two commands needs just.

# Build the pln binary into ./pln (static, no cgo).
build:
    CGO_ENABLED=0 go build -trimpath -o pln ./cmd/pln

# The whole test suite, as CI runs it.
test:
    go vet ./...
    go test -race ./...

# Benchmarks whose figures the README quotes, each beside its floor.
bench:
    go test -run '^$' -bench . -benchmem ./oplog/ ./oplog/store/ ./reducers/ ./netx/ ./wasm/ ./cas/ ./cmd/pln/daemon/

# Fuzz every decoder for a while each (FUZZTIME=1m just fuzz).
fuzz FUZZTIME="30s":
    #!/usr/bin/env bash
    set -euo pipefail
    for pkg in $(go list ./...); do
      for f in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
        echo "== $pkg $f"
        go test -run '^$' -fuzz "^$f\$" -fuzztime {{FUZZTIME}} "$pkg"
      done
    done

# Formatting and static checks.
lint:
    test -z "$(gofmt -l .)" || (gofmt -l . && exit 1)
    go vet ./...
