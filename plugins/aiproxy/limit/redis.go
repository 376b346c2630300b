package limit

import (
	"context"
	"crypto/tls"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisConf is the ai-rate-limiting policy "redis" settings, with APISIX's
// field names.
type RedisConf struct {
	Host             string
	Port             int
	Username         string
	Password         string
	Database         int
	Timeout          time.Duration
	SSL              bool
	SSLVerify        bool
	KeepaliveTimeout time.Duration
	KeepalivePool    int
}

// Redis is a store in Redis, shared by every node that uses the same
// server: the reservation is one Lua script, so check and add are atomic,
// and windows follow Redis's clock, so nodes' clocks need not agree.
type Redis struct {
	client *redis.Client
	prefix string
}

// reserveScript: KEYS[1] the counter's base key; ARGV window ms, limit, n.
// Returns {allowed, used, ms to reset, window index}.
var reserveScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local w = tonumber(ARGV[1])
local idx = math.floor(now / w)
local k = KEYS[1] .. ':' .. idx
local limit = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local used = tonumber(redis.call('GET', k) or '0')
local reset = (idx + 1) * w - now
if used + n > limit then
  return {0, used, reset, idx}
end
used = redis.call('INCRBY', k, n)
if used == n then
  redis.call('PEXPIRE', k, w + 60000)
end
return {1, used, reset, idx}
`)

// adjustScript: KEYS[1] the window's key; ARGV delta. Only an existing
// window is adjusted: an expired one is gone for good.
var adjustScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  local v = redis.call('INCRBY', KEYS[1], ARGV[1])
  if v < 0 then redis.call('SET', KEYS[1], 0, 'KEEPTTL') end
end
return 0
`)

// Reserve implements Store.
func (r *Redis) Reserve(ctx context.Context, key string, w time.Duration, limit, n int64) (Result, error) {
	v, err := reserveScript.Run(ctx, r.client, []string{r.prefix + key}, w.Milliseconds(), limit, n).Int64Slice()
	if err != nil {
		return Result{}, err
	}
	if len(v) != 4 {
		return Result{}, fmt.Errorf("redis answered %d values", len(v))
	}
	res := Result{Allowed: v[0] == 1, Remaining: max(limit-v[1], 0), Reset: time.Duration(v[2]) * time.Millisecond, Window: v[3]}
	return res, nil
}

// Adjust implements Store.
func (r *Redis) Adjust(ctx context.Context, key string, _ time.Duration, window, delta int64) error {
	return adjustScript.Run(ctx, r.client, []string{r.prefix + key + ":" + strconv.FormatInt(window, 10)}, delta).Err()
}

// quiet keeps go-redis from printing dial failures to the runner's
// output (APISIX's error.log); the relay logs and counts them itself.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

func init() { redis.SetLogger(quiet{}) }

// Redises shares one client (one connection pool) per Redis conf among
// the routes that use it.
type Redises struct {
	mu      sync.Mutex
	clients map[RedisConf]*Redis
}

// NewRedises makes an empty set.
func NewRedises() *Redises { return &Redises{clients: map[RedisConf]*Redis{}} }

// For returns the store for c.
func (s *Redises) For(c RedisConf) *Redis {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.clients[c]; ok {
		return r
	}
	opts := &redis.Options{
		Addr:            c.Host + ":" + strconv.Itoa(c.Port),
		Username:        c.Username,
		Password:        c.Password,
		DB:              c.Database,
		DialTimeout:     c.Timeout,
		ReadTimeout:     c.Timeout,
		WriteTimeout:    c.Timeout,
		PoolSize:        c.KeepalivePool,
		ConnMaxIdleTime: c.KeepaliveTimeout,
		// A down Redis must fail a call within its timeout, not after
		// go-redis's retries.
		MaxRetries:            -1,
		DialerRetries:         1,
		ContextTimeoutEnabled: true,
		// No client-side name or HELLO probing: plain RESP2 works with
		// every Redis and compatible server.
		Protocol:        2,
		DisableIdentity: true,
	}
	if c.SSL {
		opts.TLSConfig = &tls.Config{ServerName: c.Host, InsecureSkipVerify: !c.SSLVerify} //nolint:gosec // redis_ssl_verify: false is the route's choice, as in APISIX
	}
	r := &Redis{client: redis.NewClient(opts), prefix: "ai-proxy-runner:rl:"}
	s.clients[c] = r
	return r
}

// Close closes every client.
func (s *Redises) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, r := range s.clients {
		_ = r.client.Close()
		delete(s.clients, k)
	}
}
