package balance

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"strings"
	"sync"
	"time"
)

// MaxMembers bounds a pool: the members a call tried fit in one word.
const MaxMembers = 64

// Member is one instance as the balancer sees it.
type Member struct {
	Name     string
	Priority int // higher tiers are tried first
	Weight   int // 0 = never chosen
	// Models are the request models the instance serves; none = any model
	// no other instance names.
	Models []string
	Health *Health
}

// Algorithm is balancer.algorithm.
type Algorithm int

const (
	// RoundRobin spreads calls by weight (nginx's smooth weighted round robin).
	RoundRobin Algorithm = iota
	// CHash sends equal keys to the same instance while it is available
	// (weighted rendezvous hashing: a key moves only when its instance does).
	CHash
)

// Tried is the set of members a call already tried.
type Tried uint64

// Add marks member i tried.
func (t Tried) Add(i int) Tried { return t | 1<<uint(i) }

// Has says whether member i was tried.
func (t Tried) Has(i int) bool { return t&(1<<uint(i)) != 0 }

// Pool picks members for calls. It is safe for concurrent use.
type Pool struct {
	members []Member
	alg     Algorithm
	tiers   [][]int // member indices, highest priority first
	groups  map[string]Tried
	anyOf   Tried    // members with no Models
	served  []string // every model a group names, sorted

	mu      sync.Mutex
	current []float64 // smooth round-robin state per member
}

// NewPool makes a pool; members are in conf order and at most MaxMembers.
func NewPool(members []Member, alg Algorithm) (*Pool, error) {
	if len(members) == 0 || len(members) > MaxMembers {
		return nil, fmt.Errorf("a pool has 1 to %d members, not %d", MaxMembers, len(members))
	}
	p := &Pool{members: members, alg: alg, groups: map[string]Tried{}, current: make([]float64, len(members))}
	byPrio := map[int][]int{}
	var prios []int
	for i, m := range members {
		if m.Health == nil {
			return nil, fmt.Errorf("member %q has no health", m.Name)
		}
		if _, ok := byPrio[m.Priority]; !ok {
			prios = append(prios, m.Priority)
		}
		byPrio[m.Priority] = append(byPrio[m.Priority], i)
		if len(m.Models) == 0 {
			p.anyOf = p.anyOf.Add(i)
		}
		for _, model := range m.Models {
			if p.groups[model] == 0 {
				p.served = append(p.served, model)
			}
			p.groups[model] = p.groups[model].Add(i)
		}
	}
	sort.Sort(sort.Reverse(sort.IntSlice(prios)))
	for _, pr := range prios {
		p.tiers = append(p.tiers, byPrio[pr])
	}
	sort.Strings(p.served)
	return p, nil
}

// Members returns the pool's members in conf order.
func (p *Pool) Members() []Member { return p.members }

// UnknownModelError is a request for a model no instance serves.
type UnknownModelError struct {
	Model  string
	Served []string
}

func (e *UnknownModelError) Error() string {
	if e.Model == "" {
		return "the request names no model; this route serves " + strings.Join(e.Served, ", ")
	}
	return fmt.Sprintf("model %q is not served by this route; it serves %s", e.Model, strings.Join(e.Served, ", "))
}

// CoolingError says every instance that could serve the call is cooling.
type CoolingError struct{ RetryAfter time.Duration }

func (e *CoolingError) Error() string {
	return fmt.Sprintf("every instance of this route is cooling down after failures or rate limits; retry in %s", e.RetryAfter.Round(time.Second))
}

// ErrExhausted means the call tried every instance that could serve it.
var ErrExhausted = errors.New("every instance that could serve the request was tried")

// Pick chooses the member for a call's next attempt: the model's group (or
// the instances that serve any model), not yet tried, not cooling, from
// the highest tier that has one. trial says the call is its member's
// trial after a cooldown; pass it back to Release.
func (p *Pool) Pick(model string, key uint64, tried Tried, now time.Time) (idx int, trial bool, err error) {
	eligible, err := p.eligible(model)
	if err != nil {
		return -1, false, err
	}
	var soonest time.Time
	untried := false
	var buf [MaxMembers]int // candidates live on the stack
	for _, tier := range p.tiers {
		cands := buf[:0]
		for _, i := range tier {
			if eligible.Has(i) && !tried.Has(i) && p.members[i].Weight > 0 {
				cands = append(cands, i)
			}
		}
		untried = untried || len(cands) > 0
		for len(cands) > 0 {
			j := p.choose(cands, key, now)
			i := cands[j]
			ok, isTrial, retryAt := p.members[i].Health.acquire(now)
			if ok {
				return i, isTrial, nil
			}
			if soonest.IsZero() || retryAt.Before(soonest) {
				soonest = retryAt
			}
			cands = append(cands[:j], cands[j+1:]...)
		}
	}
	if !untried {
		return -1, false, ErrExhausted
	}
	wait := max(soonest.Sub(now), time.Second)
	return -1, false, &CoolingError{RetryAfter: wait}
}

func (p *Pool) eligible(model string) (Tried, error) {
	in := p.groups[model]
	if in == 0 {
		in = p.anyOf
	}
	if in == 0 {
		return 0, &UnknownModelError{Model: model, Served: p.served}
	}
	return in, nil
}

// choose returns the position in cands of the member to try.
func (p *Pool) choose(cands []int, key uint64, now time.Time) int {
	if len(cands) == 1 {
		return 0
	}
	if p.alg == CHash {
		best, bestScore := 0, math.Inf(1)
		for j, i := range cands {
			// Weighted rendezvous: -ln(u)/w is an exponential draw with rate
			// w, so each key goes to member i with probability w_i/Σw and
			// only keys of a removed member move.
			u := unitHash(key, p.members[i].Name)
			if s := -math.Log(u) / float64(p.members[i].Weight); s < bestScore {
				best, bestScore = j, s
			}
		}
		return best
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	best, total := 0, 0.0
	for j, i := range cands {
		w := float64(p.members[i].Weight) * p.members[i].Health.weightFactor(now)
		p.current[i] += w
		total += w
		if p.current[i] > p.current[cands[best]] {
			best = j
		}
	}
	p.current[cands[best]] -= total
	return best
}

// unitHash maps (key, name) into (0, 1].
func unitHash(key uint64, name string) float64 {
	// FNV-1a over the key's bytes and the name, inline: no hasher to allocate.
	x := uint64(14695981039346656037)
	for i := 0; i < 8; i++ {
		x ^= key >> (8 * i) & 0xff
		x *= 1099511628211
	}
	for i := 0; i < len(name); i++ {
		x ^= uint64(name[i])
		x *= 1099511628211
	}
	// FNV's bits mix poorly for short inputs: finish with splitmix64.
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return (float64(x>>11) + 1) / (1 << 53)
}

// HashKey turns a chash key's text into the key Pick takes.
func HashKey(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return h.Sum64()
}
