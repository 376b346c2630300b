package balance

import (
	"strconv"
	"testing"
	"time"
)

// The balancer's cost per call, to set beside the ext-plugin round trip
// (hundreds of microseconds): one Pick and its Release.
func benchPool(b *testing.B, alg Algorithm, models bool) {
	var members []Member
	for i := range 8 {
		m := Member{Name: "instance-" + strconv.Itoa(i), Priority: i % 2, Weight: i + 1, Health: NewHealth()}
		if models {
			m.Models = []string{"model-" + strconv.Itoa(i%4)}
		}
		members = append(members, m)
	}
	p, err := NewPool(members, alg)
	if err != nil {
		b.Fatal(err)
	}
	model := ""
	if models {
		model = "model-1"
	}
	now := time.Now()
	b.ReportAllocs()
	var key uint64
	for b.Loop() {
		key++
		i, trial, err := p.Pick(model, key, 0, now)
		if err != nil {
			b.Fatal(err)
		}
		p.members[i].Health.Release(trial, Success, "", nil, now)
	}
}

func BenchmarkPickRoundRobin(b *testing.B) { benchPool(b, RoundRobin, false) }
func BenchmarkPickCHash(b *testing.B)      { benchPool(b, CHash, false) }
func BenchmarkPickModelGroup(b *testing.B) { benchPool(b, RoundRobin, true) }
