module github.com/ai-proxy-runner/ai-proxy-runner

go 1.26.8

require (
	cloud.google.com/go/compute/metadata v0.10.0 // indirect
	github.com/ReneKroon/ttlcache/v2 v2.4.0 // indirect
	github.com/apache/apisix-go-plugin-runner v0.5.0 // indirect
	github.com/api7/ext-plugin-proto v0.6.1 // indirect
	github.com/google/flatbuffers v2.0.0+incompatible // indirect
	github.com/tidwall/gjson v1.20.1 // indirect
	github.com/tidwall/match v1.1.1 // indirect
	github.com/tidwall/pretty v1.2.0 // indirect
	github.com/tidwall/sjson v1.2.7 // indirect
	go.uber.org/goleak v1.3.0 // indirect
	go.uber.org/multierr v1.10.0 // indirect
	go.uber.org/zap v1.28.0 // indirect
	golang.org/x/oauth2 v0.38.0 // indirect
	golang.org/x/sys v0.46.0 // indirect
)
