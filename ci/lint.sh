#!/usr/bin/env bash
# gofmt, go vet, staticcheck and a go.mod tidiness check; fails on the first finding.
set -euo pipefail
cd "$(dirname "$0")/.."

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would rewrite:"; echo "$unformatted"; exit 1
fi
go vet ./...
# staticcheck, pinned, fetched through the module proxy (not a go.mod dependency).
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cp go.mod go.sum "$tmp/"
go mod tidy
if ! cmp -s go.mod "$tmp/go.mod" || ! cmp -s go.sum "$tmp/go.sum"; then
	cp "$tmp/go.mod" "$tmp/go.sum" .
	echo "go mod tidy changes go.mod/go.sum: run it and commit the result"; exit 1
fi
echo "lint: ok"
