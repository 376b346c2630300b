package realapisix_test

import (
	"testing"

	"github.com/tidwall/gjson"
)

const seedMathBody = `{"messages":[{"role":"system","content":"You are a mathematician"},{"role":"user","content":"What is 1+1?"}]}`

func TestSeedOpenAI(t *testing.T) {
	l := newLane(t)
	l.putRoute(t, "openai")
	resp, body := l.post(t, "/anything", seedMathBody, "Host", "api.openai.com")
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s\n%s", resp.StatusCode, body, l.ErrorLog())
	}
	if gjson.Get(body, "model").String() != "gpt-4-0613" {
		t.Errorf("client got %s", body)
	}
}
