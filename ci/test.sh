#!/usr/bin/env bash
# Unit and end-to-end tests, as CI runs them. The e2e suite builds the
# runner binary itself and starts it under the APISIX test double.
set -euo pipefail
cd "$(dirname "$0")/.."
go test -race -count=1 -timeout 10m ./...

# A few seconds of each fuzz target beyond its committed corpus; `make fuzz`
# runs them longer.
go test -run '^$' -fuzz '^FuzzParseConf$' -fuzztime 3s ./plugins/aiproxy
go test -run '^$' -fuzz '^FuzzEventReader$' -fuzztime 3s ./providers
go test -run '^$' -fuzz '^FuzzPredictToOpenAI$' -fuzztime 3s ./providers
