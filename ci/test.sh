#!/usr/bin/env bash
# Unit and end-to-end tests, as CI runs them. The e2e suite builds the
# runner binary itself and starts it under the APISIX test double.
set -euo pipefail
cd "$(dirname "$0")/.."
go test -race -count=1 -timeout 10m ./...
