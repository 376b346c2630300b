package balance

import (
	"errors"
	"math"
	"net/http"
	"reflect"
	"strconv"
	"testing"
	"time"
)

// poolT0 is the fixed "now" of the pool tests: nothing here reads the clock.
var poolT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// spec describes one member for newTestPool.
type spec struct {
	name     string
	priority int
	weight   int
	models   []string
}

// newTestPool builds a pool whose members each have their own fresh Health.
func newTestPool(t *testing.T, alg Algorithm, specs ...spec) *Pool {
	t.Helper()
	members := make([]Member, len(specs))
	for i, s := range specs {
		members[i] = Member{Name: s.name, Priority: s.priority, Weight: s.weight, Models: s.models, Health: NewHealth()}
	}
	p, err := NewPool(members, alg)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	return p
}

// mustPick picks and fails the test on an error.
func mustPick(t *testing.T, p *Pool, model string, key uint64, tried Tried, now time.Time) (int, bool) {
	t.Helper()
	i, trial, err := p.Pick(model, key, tried, now)
	if err != nil {
		t.Fatalf("Pick(%q, %d, %b, %s): %v", model, key, tried, now.Sub(poolT0), err)
	}
	return i, trial
}

// cool puts member i of p into a cooldown of d seconds (a 429 with Retry-After).
func cool(p *Pool, i int, seconds int, now time.Time) {
	h := http.Header{}
	h.Set("Retry-After", strconv.Itoa(seconds))
	p.members[i].Health.Release(false, RateLimited, "http_429", h, now)
}

func TestNewPoolRejects(t *testing.T) {
	tests := []struct {
		name    string
		members []Member
	}{
		{"no members", nil},
		{"too many members", make([]Member, MaxMembers+1)},
		{"member without health", []Member{{Name: "a", Weight: 1}}},
	}
	for i := range tests[1].members {
		tests[1].members[i] = Member{Name: strconv.Itoa(i), Weight: 1, Health: NewHealth()}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewPool(tt.members, RoundRobin); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestTried(t *testing.T) {
	var tr Tried
	tr = tr.Add(0).Add(5).Add(MaxMembers - 1)
	for i := 0; i < MaxMembers; i++ {
		want := i == 0 || i == 5 || i == MaxMembers-1
		if tr.Has(i) != want {
			t.Errorf("Has(%d) = %v, want %v", i, tr.Has(i), want)
		}
	}
}

func TestSmoothWeightedRoundRobin(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		picks   int
		want    []int
	}{
		{"5/3/2", []int{5, 3, 2}, 1000, []int{500, 300, 200}},
		{"1/1", []int{1, 1}, 10, []int{5, 5}},
		{"equal three", []int{4, 4, 4}, 999, []int{333, 333, 333}},
		{"single", []int{7}, 10, []int{10}},
		{"zero weight never", []int{3, 0, 1}, 400, []int{300, 0, 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var specs []spec
			for i, w := range tt.weights {
				specs = append(specs, spec{name: "m" + strconv.Itoa(i), weight: w})
			}
			p := newTestPool(t, RoundRobin, specs...)
			got := make([]int, len(specs))
			for n := 0; n < tt.picks; n++ {
				i, trial := mustPick(t, p, "", 0, 0, poolT0)
				if trial {
					t.Fatalf("pick %d is a trial on a healthy pool", n)
				}
				got[i]++
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("counts = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSmoothRoundRobinNeverRepeatsEqualWeights(t *testing.T) {
	for _, n := range []int{2, 3, 5} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			var specs []spec
			for i := 0; i < n; i++ {
				specs = append(specs, spec{name: "m" + strconv.Itoa(i), weight: 3})
			}
			p := newTestPool(t, RoundRobin, specs...)
			prev := -1
			for k := 0; k < 100*n; k++ {
				i, _ := mustPick(t, p, "", 0, 0, poolT0)
				if i == prev {
					t.Fatalf("pick %d: member %d twice in a row", k, i)
				}
				prev = i
			}
		})
	}
}

// TestSmoothRoundRobinSpreads checks the smoothness itself: within every
// window of Σw picks each member gets exactly its weight.
func TestSmoothRoundRobinSpreads(t *testing.T) {
	p := newTestPool(t, RoundRobin, spec{name: "a", weight: 5}, spec{name: "b", weight: 3}, spec{name: "c", weight: 2})
	for round := 0; round < 50; round++ {
		got := make([]int, 3)
		for k := 0; k < 10; k++ {
			i, _ := mustPick(t, p, "", 0, 0, poolT0)
			got[i]++
		}
		if !reflect.DeepEqual(got, []int{5, 3, 2}) {
			t.Fatalf("round %d: counts %v, want [5 3 2]", round, got)
		}
	}
}

func TestPriorityTiers(t *testing.T) {
	// Conf order deliberately differs from priority order.
	specs := []spec{
		{name: "low", priority: -1, weight: 1},
		{name: "high-a", priority: 10, weight: 1},
		{name: "mid", priority: 0, weight: 1},
		{name: "high-b", priority: 10, weight: 1},
		{name: "high-zero", priority: 10, weight: 0},
	}
	const low, highA, mid, highB, highZero = 0, 1, 2, 3, 4

	t.Run("highest tier takes every call", func(t *testing.T) {
		p := newTestPool(t, RoundRobin, specs...)
		for k := 0; k < 100; k++ {
			if i, _ := mustPick(t, p, "", 0, 0, poolT0); i != highA && i != highB {
				t.Fatalf("pick %d went to %s", k, specs[i].name)
			}
		}
	})

	tests := []struct {
		name    string
		tried   []int
		cooling []int
		want    []int // members the pick may return
		wantErr error
	}{
		{"one of the top tier tried", []int{highA}, nil, []int{highB}, nil},
		{"one of the top tier cooling", nil, []int{highB}, []int{highA}, nil},
		{"top tier tried", []int{highA, highB}, nil, []int{mid}, nil},
		{"top tier cooling", nil, []int{highA, highB}, []int{mid}, nil},
		{"top tier tried and cooling", []int{highA}, []int{highB}, []int{mid}, nil},
		{"two tiers tried or cooling", []int{highA, mid}, []int{highB}, []int{low}, nil},
		{"all tried", []int{low, highA, mid, highB}, nil, nil, ErrExhausted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestPool(t, RoundRobin, specs...)
			var tried Tried
			for _, i := range tt.tried {
				tried = tried.Add(i)
			}
			for _, i := range tt.cooling {
				cool(p, i, 30, poolT0)
			}
			for k := 0; k < 20; k++ {
				i, _, err := p.Pick("", 0, tried, poolT0.Add(time.Second))
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("Pick = %d, %v; want %v", i, err, tt.wantErr)
					}
					continue
				}
				if err != nil {
					t.Fatalf("Pick: %v", err)
				}
				if i == highZero {
					t.Fatal("picked a weight-0 member")
				}
				ok := false
				for _, w := range tt.want {
					ok = ok || i == w
				}
				if !ok {
					t.Fatalf("picked %s, want one of %v", specs[i].name, tt.want)
				}
			}
		})
	}
}

func TestWeightZero(t *testing.T) {
	t.Run("all eligible weight 0", func(t *testing.T) {
		p := newTestPool(t, RoundRobin, spec{name: "a", weight: 0}, spec{name: "b", weight: 0, priority: 3})
		if i, _, err := p.Pick("", 0, 0, poolT0); !errors.Is(err, ErrExhausted) {
			t.Fatalf("Pick = %d, %v; want ErrExhausted", i, err)
		}
	})
	t.Run("only weight 0 left untried", func(t *testing.T) {
		p := newTestPool(t, RoundRobin, spec{name: "a", weight: 1}, spec{name: "b", weight: 0})
		if i, _, err := p.Pick("", 0, Tried(0).Add(0), poolT0); !errors.Is(err, ErrExhausted) {
			t.Fatalf("Pick = %d, %v; want ErrExhausted", i, err)
		}
	})
	t.Run("model group of weight 0", func(t *testing.T) {
		p := newTestPool(t, RoundRobin, spec{name: "a", weight: 1}, spec{name: "b", weight: 0, models: []string{"m"}})
		if i, _, err := p.Pick("m", 0, 0, poolT0); !errors.Is(err, ErrExhausted) {
			t.Fatalf("Pick = %d, %v; want ErrExhausted", i, err)
		}
	})
	t.Run("chash skips weight 0", func(t *testing.T) {
		p := newTestPool(t, CHash, spec{name: "a", weight: 1}, spec{name: "b", weight: 0}, spec{name: "c", weight: 1})
		for k := uint64(0); k < 2000; k++ {
			if i, _ := mustPick(t, p, "", k, 0, poolT0); i == 1 {
				t.Fatalf("key %d went to the weight-0 member", k)
			}
		}
	})
}

func TestCHashStable(t *testing.T) {
	p := newTestPool(t, CHash, spec{name: "a", weight: 5}, spec{name: "b", weight: 3}, spec{name: "c", weight: 2})
	for k := 0; k < 500; k++ {
		key := HashKey("user-" + strconv.Itoa(k))
		first, _ := mustPick(t, p, "", key, 0, poolT0)
		for r := 0; r < 5; r++ {
			if i, _ := mustPick(t, p, "", key, 0, poolT0.Add(time.Duration(r)*time.Second)); i != first {
				t.Fatalf("key %d went to %d then %d", k, first, i)
			}
		}
	}
	// A fresh pool of the same members (another conf version) agrees.
	q := newTestPool(t, CHash, spec{name: "a", weight: 5}, spec{name: "b", weight: 3}, spec{name: "c", weight: 2})
	for k := 0; k < 500; k++ {
		key := HashKey("user-" + strconv.Itoa(k))
		i, _ := mustPick(t, p, "", key, 0, poolT0)
		j, _ := mustPick(t, q, "", key, 0, poolT0)
		if i != j {
			t.Fatalf("key %d: pool 1 picks %d, pool 2 picks %d", k, i, j)
		}
	}
}

func TestCHashSpreadFollowsWeights(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
	}{
		{"5/3/2", []int{5, 3, 2}},
		{"equal", []int{1, 1, 1, 1}},
		{"skewed", []int{9, 1}},
	}
	const keys = 10000
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var specs []spec
			total := 0
			for i, w := range tt.weights {
				specs = append(specs, spec{name: "instance-" + strconv.Itoa(i), weight: w})
				total += w
			}
			p := newTestPool(t, CHash, specs...)
			got := make([]int, len(specs))
			for k := 0; k < keys; k++ {
				i, _ := mustPick(t, p, "", HashKey("key-"+strconv.Itoa(k)), 0, poolT0)
				got[i]++
			}
			for i, w := range tt.weights {
				share := float64(got[i]) / keys
				want := float64(w) / float64(total)
				if math.Abs(share-want) > 0.03 {
					t.Errorf("member %d: share %.3f, want %.3f ± 0.03 (counts %v)", i, share, want, got)
				}
			}
		})
	}
}

func TestCHashOnlyCoolingMembersKeysMove(t *testing.T) {
	for _, cooled := range []int{0, 1, 2} {
		t.Run("cool "+strconv.Itoa(cooled), func(t *testing.T) {
			p := newTestPool(t, CHash, spec{name: "a", weight: 5}, spec{name: "b", weight: 3}, spec{name: "c", weight: 2})
			const keys = 10000
			before := make([]int, keys)
			for k := range before {
				before[k], _ = mustPick(t, p, "", HashKey("key-"+strconv.Itoa(k)), 0, poolT0)
			}
			cool(p, cooled, 60, poolT0)
			now := poolT0.Add(time.Second)
			moved := 0
			for k := range before {
				i, _ := mustPick(t, p, "", HashKey("key-"+strconv.Itoa(k)), 0, now)
				switch {
				case before[k] == cooled && i == cooled:
					t.Fatalf("key %d stayed on its cooling member", k)
				case before[k] != cooled && i != before[k]:
					t.Fatalf("key %d moved from %d to %d though only %d cools", k, before[k], i, cooled)
				case i != before[k]:
					moved++
				}
			}
			if moved == 0 {
				t.Fatal("no key moved")
			}
			// Tried works like cooling: a retry of a key moves it, and only it.
			for k := 0; k < 1000; k++ {
				key := HashKey("key-" + strconv.Itoa(k))
				first, _ := mustPick(t, p, "", key, 0, now)
				second, _ := mustPick(t, p, "", key, Tried(0).Add(first), now)
				if second == first || second == cooled {
					t.Fatalf("key %d: retry after %d went to %d", k, first, second)
				}
			}
		})
	}
}

func TestModelGroups(t *testing.T) {
	specs := []spec{
		{name: "gpt", weight: 1, models: []string{"gpt-4o", "gpt-4o-mini"}},
		{name: "any-1", weight: 1},
		{name: "claude", weight: 1, models: []string{"claude-sonnet"}},
		{name: "gpt-backup", weight: 1, models: []string{"gpt-4o"}},
		{name: "any-2", weight: 1},
	}
	tests := []struct {
		model string
		want  []int
	}{
		{"gpt-4o", []int{0, 3}},
		{"gpt-4o-mini", []int{0}},
		{"claude-sonnet", []int{2}},
		{"llama", []int{1, 4}},
		{"", []int{1, 4}},
		{"GPT-4O", []int{1, 4}}, // names are matched exactly
	}
	for _, alg := range []Algorithm{RoundRobin, CHash} {
		for _, tt := range tests {
			t.Run(strconv.Itoa(int(alg))+"/"+tt.model, func(t *testing.T) {
				p := newTestPool(t, alg, specs...)
				seen := map[int]bool{}
				for k := 0; k < 200; k++ {
					i, _ := mustPick(t, p, tt.model, HashKey(strconv.Itoa(k)), 0, poolT0)
					seen[i] = true
				}
				want := map[int]bool{}
				for _, i := range tt.want {
					want[i] = true
				}
				if !reflect.DeepEqual(seen, want) {
					t.Fatalf("model %q went to %v, want %v", tt.model, seen, want)
				}
			})
		}
	}

	t.Run("group exhausted does not spill to other members", func(t *testing.T) {
		p := newTestPool(t, RoundRobin, specs...)
		tried := Tried(0).Add(0).Add(3)
		if i, _, err := p.Pick("gpt-4o", 0, tried, poolT0); !errors.Is(err, ErrExhausted) {
			t.Fatalf("Pick = %d, %v; want ErrExhausted", i, err)
		}
	})
}

func TestUnknownModel(t *testing.T) {
	p := newTestPool(t, RoundRobin,
		spec{name: "b", weight: 1, models: []string{"zeta", "alpha"}},
		spec{name: "a", weight: 1, models: []string{"mid", "alpha"}},
	)
	for _, model := range []string{"other", ""} {
		t.Run(model, func(t *testing.T) {
			i, _, err := p.Pick(model, 0, 0, poolT0)
			var um *UnknownModelError
			if !errors.As(err, &um) {
				t.Fatalf("Pick = %d, %v; want *UnknownModelError", i, err)
			}
			if um.Model != model {
				t.Errorf("Model = %q, want %q", um.Model, model)
			}
			if want := []string{"alpha", "mid", "zeta"}; !reflect.DeepEqual(um.Served, want) {
				t.Errorf("Served = %q, want %q", um.Served, want)
			}
			if um.Error() == "" {
				t.Error("empty message")
			}
		})
	}
	// Served models still work.
	if i, _ := mustPick(t, p, "zeta", 0, 0, poolT0); i != 0 {
		t.Fatalf("zeta went to %d", i)
	}
}

func TestLowHeadroomShrinksShare(t *testing.T) {
	p := newTestPool(t, RoundRobin, spec{name: "low", weight: 1}, spec{name: "unknown", weight: 1})
	h := http.Header{}
	h.Set("X-Ratelimit-Limit-Requests", "100")
	h.Set("X-Ratelimit-Remaining-Requests", "1")
	p.members[0].Health.Release(false, Success, "", h, poolT0)
	if s := p.members[0].Health.State(poolT0); s != Healthy {
		t.Fatalf("state %s, want healthy: low headroom is not a cooldown", s)
	}
	got := make([]int, 2)
	for k := 0; k < 1000; k++ {
		i, _ := mustPick(t, p, "", 0, 0, poolT0.Add(time.Second))
		got[i]++
	}
	if got[0] == 0 || got[0]*4 > got[1] {
		t.Fatalf("counts %v: the low-headroom member should get some but far fewer calls", got)
	}

	// Plenty of headroom (remaining 90 of 100) is full weight.
	q := newTestPool(t, RoundRobin, spec{name: "plenty", weight: 1}, spec{name: "unknown", weight: 1})
	h.Set("X-Ratelimit-Remaining-Requests", "90")
	q.members[0].Health.Release(false, Success, "", h, poolT0)
	got = make([]int, 2)
	for k := 0; k < 1000; k++ {
		i, _ := mustPick(t, q, "", 0, 0, poolT0.Add(time.Second))
		got[i]++
	}
	if got[0] != 500 || got[1] != 500 {
		t.Fatalf("counts %v, want [500 500]", got)
	}
}

func TestLowHeadroomIsForgotten(t *testing.T) {
	p := newTestPool(t, RoundRobin, spec{name: "low", weight: 1}, spec{name: "unknown", weight: 1})
	h := http.Header{}
	h.Set("X-Ratelimit-Limit-Requests", "100")
	h.Set("X-Ratelimit-Remaining-Requests", "1")
	h.Set("X-Ratelimit-Reset-Requests", "10s")
	p.members[0].Health.Release(false, Success, "", h, poolT0)
	got := make([]int, 2)
	for k := 0; k < 1000; k++ {
		i, _ := mustPick(t, p, "", 0, 0, poolT0.Add(10*time.Second))
		got[i]++
	}
	if got[0] != 500 {
		t.Fatalf("counts %v after the reset: want the full share back", got)
	}
}
