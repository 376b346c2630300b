package main

import (
	"testing"
	"time"
)

func TestSentAt(t *testing.T) {
	at, ok := sentAt(`data: {"model":"m","sent_ns":1700000000123456789,"choices":[]}` + "\n")
	if !ok || at.UnixNano() != 1700000000123456789 {
		t.Fatalf("sentAt = %v, %v", at.UnixNano(), ok)
	}
	for _, line := range []string{"data: [DONE]\n", `data: {"sent_ns":x,}`, `data: {"sent_ns":12}`, "\n"} {
		if _, ok := sentAt(line); ok {
			t.Errorf("sentAt(%q) found a stamp", line)
		}
	}
}

// Throughput divides by the time the requests took, not by the nominal
// load length, so rounds add up exactly.
func TestResultRPS(t *testing.T) {
	var r result
	r.add(result{n: 100, elapsed: time.Second})
	r.add(result{n: 50, elapsed: 500 * time.Millisecond, errors: 1})
	if got := r.rps(); got != 100 {
		t.Fatalf("rps = %v, want 100", got)
	}
	if r.errors != 1 || r.n != 150 {
		t.Fatalf("sums: %+v", r)
	}
	if (result{}).rps() != 0 {
		t.Fatal("an empty result has a rate")
	}
}
