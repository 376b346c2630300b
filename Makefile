# ai-proxy-runner — `make help` lists the targets.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BIN      := bin/ai-proxy-runner

.PHONY: help build run test unit lint routes bench fuzz clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

build: ## build bin/ai-proxy-runner (static: it also runs inside the apache/apisix image)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/ai-proxy-runner

run: build ## the main job on this machine: runner under real APISIX if installed (else the test double) on :9080, admin :9180, + a mock OpenAI provider
	$(GO) run ./t/quickstart -runner $(BIN)

test: lint ## everything CI runs: lint, unit and end-to-end tests (-race), then the real-APISIX lane on each installed APISIX
	bash ci/test.sh

unit: ## unit tests only (no runner binary, no APISIX double)
	$(GO) test -race -count=1 ./cmd/... ./plugins/... ./providers/...

lint: ## gofmt, go vet, staticcheck, go mod tidy check
	bash ci/lint.sh

routes: ## regenerate conf/routes/*.json from conf/routes/seed/ with `ai-proxy-runner route`
	@for f in conf/routes/seed/*.json; do \
		$(GO) run ./cmd/ai-proxy-runner route "$$f" > conf/routes/$$(basename "$$f") || exit 1; \
	done

bench: build ## load benchmarks through the APISIX double and the relay's go benchmarks, written to docs/benchmarks.md
	$(GO) run ./t/bench -runner $(BIN) -out docs/benchmarks.md

FUZZ_EXECS ?= 1000000x
fuzz: ## longer fuzzing: conf parsers, SSE reader, embeddings converter, protocol codecs, ext-plugin RPCs
	$(GO) test -run '^$$' -fuzz FuzzParseConf -fuzztime $(FUZZ_EXECS) ./plugins/aiproxy
	$(GO) test -run '^$$' -fuzz FuzzParseLimitConf -fuzztime $(FUZZ_EXECS) ./plugins/aiproxy
	$(GO) test -run '^$$' -fuzz FuzzEventReader -fuzztime $(FUZZ_EXECS) ./providers
	$(GO) test -run '^$$' -fuzz FuzzPredictToOpenAI -fuzztime $(FUZZ_EXECS) ./providers
	$(GO) test -run '^$$' -fuzz FuzzApplyOptions -fuzztime $(FUZZ_EXECS) ./providers
	$(GO) test -run '^$$' -fuzz FuzzRPC -fuzztime $(FUZZ_EXECS) ./cmd/ai-proxy-runner/gate
	for f in FuzzOpenAIChat FuzzAnthropic FuzzResponsesGemini FuzzBedrock; do \
		$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZ_EXECS) ./providers/protocols || exit 1; \
	done

clean: ## remove build output
	rm -rf bin
