package realapisix_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
	"gopkg.in/yaml.v3"
)

// The compose recipe runs APISIX with the very config.yaml this lane
// merges and tests, and its pieces fit together: the runner binary where
// ext-plugin.cmd says, the relay where conf/upstream.json points, every
// runner variable passed through nginx_config.envs, and a deployment part
// that only adds keys.
func TestComposeUsesTheTestedConfig(t *testing.T) {
	var compose struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Command     []string          `yaml:"command"`
			Volumes     []string          `yaml:"volumes"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	readYAML(t, "../../conf/docker-compose.yaml", &compose)
	apisix, ok := compose.Services["apisix"]
	if !ok || !strings.HasPrefix(apisix.Image, "apache/apisix:3.") {
		t.Fatalf("no stock apache/apisix 3.x service: %+v", compose.Services)
	}
	mounts := map[string]string{} // container path → file in conf/
	for _, v := range apisix.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			t.Fatalf("volume %q", v)
		}
		mounts[parts[1]] = filepath.Clean(filepath.Join("../../conf", parts[0]))
	}
	var config map[string]any
	readYAML(t, "../../conf/config.yaml", &config)
	var deployment map[string]any
	readYAML(t, "../../conf/docker/deployment.yaml", &deployment)

	// The command concatenates the deployment part and the tested file.
	cmd := strings.Join(apisix.Command, " ")
	want := "cat /opt/ai-proxy/deployment.yaml /opt/ai-proxy/config.yaml > /usr/local/apisix/conf/config.yaml"
	if !strings.Contains(cmd, want) {
		t.Errorf("apisix command %q does not build config.yaml as %q", cmd, want)
	}
	if got := mounts["/opt/ai-proxy/config.yaml"]; got != filepath.Clean("../../conf/config.yaml") {
		t.Errorf("the compose file mounts %q as the runner's config part, the lane tests ../../conf/config.yaml", got)
	}
	if got := mounts["/opt/ai-proxy/deployment.yaml"]; got != filepath.Clean("../../conf/docker/deployment.yaml") {
		t.Errorf("deployment part from %q", got)
	}
	for k := range deployment {
		if _, dup := config[k]; dup {
			t.Errorf("top-level key %q is in both parts: concatenation would not merge them", k)
		}
	}
	a, _ := os.ReadFile("../../conf/docker/deployment.yaml")
	b, _ := os.ReadFile("../../conf/config.yaml")
	var merged map[string]any
	if err := yaml.Unmarshal(append(append(a, '\n'), b...), &merged); err != nil {
		t.Fatalf("the concatenated config.yaml is not YAML: %v", err)
	}
	if len(merged) != len(config)+len(deployment) {
		t.Errorf("concatenation has %d top-level keys, want %d", len(merged), len(config)+len(deployment))
	}

	// The binary is where ext-plugin.cmd looks for it.
	ep := config["ext-plugin"].(map[string]any)["cmd"].([]any)
	if _, ok := mounts[ep[0].(string)]; !ok {
		t.Errorf("ext-plugin.cmd runs %v, the compose file mounts no binary there (%v)", ep[0], mounts)
	}
	// Every variable given to APISIX reaches the runner.
	envs := map[string]bool{}
	for _, e := range config["nginx_config"].(map[string]any)["envs"].([]any) {
		envs[e.(string)] = true
	}
	for k := range apisix.Environment {
		if !envs[k] {
			t.Errorf("compose sets %s, which nginx_config.envs does not pass to the runner", k)
		}
	}
	// The relay listens where the upstream points.
	up, _ := os.ReadFile("../../conf/upstream.json")
	node := ""
	gjson.GetBytes(up, "nodes").ForEach(func(k, _ gjson.Result) bool { node = k.String(); return false })
	if relay := apisix.Environment["AI_PROXY_RELAY_ADDR"]; relay != node {
		t.Errorf("compose relay %q, conf/upstream.json node %q", relay, node)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
