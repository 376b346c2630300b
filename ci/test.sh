#!/usr/bin/env bash
# Unit and end-to-end tests, as CI runs them: the suite under the APISIX
# test double (-race), then the real-APISIX lane on every installed APISIX.
set -euo pipefail
cd "$(dirname "$0")/.."
go test -race -count=1 -timeout 10m $(go list ./... | grep -v /t/realapisix)

# A few seconds of each fuzz target beyond its committed corpus; `make fuzz`
# runs them longer. The budget is a count, not a time: Go 1.26's fuzz
# coordinator can fail a target with a bare "context deadline exceeded" when a
# -fuzztime duration runs out under load (golang/go#75804, fixed in 1.27);
# a count sets no deadline.
go test -run '^$' -fuzz '^FuzzParseConf$' -fuzztime 20000x ./plugins/aiproxy
go test -run '^$' -fuzz '^FuzzParseLimitConf$' -fuzztime 20000x ./plugins/aiproxy
go test -run '^$' -fuzz '^FuzzEventReader$' -fuzztime 20000x ./providers
go test -run '^$' -fuzz '^FuzzPredictToOpenAI$' -fuzztime 20000x ./providers
go test -run '^$' -fuzz '^FuzzApplyOptions$' -fuzztime 20000x ./providers
go test -run '^$' -fuzz '^FuzzRPC$' -fuzztime 20000x ./cmd/ai-proxy-runner/gate
for f in FuzzOpenAIChat FuzzAnthropic FuzzResponsesGemini FuzzBedrock; do
	go test -run '^$' -fuzz "^$f\$" -fuzztime 20000x ./providers/protocols
done

# The real-APISIX lane: stock APISIX started as users start it (etcd,
# `apisix start`, routes through the Admin API), once per install.
# AI_PROXY_REQUIRE_APISIX=1 (set by .ci/run when it installed APISIX) turns
# a missing install into a failure instead of a skip.
homes=()
for h in "${APISIX_HOME:-/usr/local/apisix}" /usr/local/apisix-3.2.2; do
	if [ -f "$h/apisix/core/version.lua" ] && ! printf '%s\n' "${homes[@]}" | grep -qx "$h"; then
		homes+=("$h")
	fi
done
if [ ${#homes[@]} -eq 0 ]; then
	if [ -n "${AI_PROXY_REQUIRE_APISIX:-}" ]; then
		echo "real-APISIX lane required but no APISIX is installed" >&2
		exit 1
	fi
	echo "real-APISIX lane skipped: no APISIX at ${APISIX_HOME:-/usr/local/apisix} (install one: sudo bash ../shared/apisix/install.sh --with-old, or set APISIX_HOME)"
	exit 0
fi
for h in "${homes[@]}"; do
	echo "real-APISIX lane on $h"
	APISIX_HOME="$h" go test -count=1 -timeout 10m ./t/realapisix
done
