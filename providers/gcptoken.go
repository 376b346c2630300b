package providers

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"golang.org/x/oauth2/jwt"
)

const (
	cloudPlatformScope = "https://www.googleapis.com/auth/cloud-platform"
	defaultExpireEarly = 60 * time.Second
	tokenFetchTimeout  = 10 * time.Second
)

// tokenHTTPClient fetches access tokens: proxy-aware like the relay's own
// transport, and bounded, because the fetch runs detached from requests.
var tokenHTTPClient = &http.Client{
	Timeout:   tokenFetchTimeout,
	Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 2},
}

// tokenStats counts token fetches of every service account, for metrics.
var tokenStats struct {
	mu                sync.Mutex
	fetches, failures int64
}

// TokenFetches reports how many access-token requests were made and how
// many of them failed, over all service accounts.
func TokenFetches() (fetches, failures int64) {
	tokenStats.mu.Lock()
	defer tokenStats.mu.Unlock()
	return tokenStats.fetches, tokenStats.failures
}

// tokenSource turns a service account into OAuth2 access tokens (the JWT
// bearer flow of golang.org/x/oauth2/jwt) and caches them. A token is
// refreshed in the background once it is within expireEarly of its end, and
// callers keep using it meanwhile; only a cold or expired cache makes them
// wait. One fetch runs at a time whatever the number of callers.
type tokenSource struct {
	cfg         *jwt.Config
	expireEarly time.Duration
	maxTTL      time.Duration // 0 = as the token endpoint says
	now         func() time.Time
	fetch       func() (*oauth2.Token, error) // fetchJWT; tests stub it

	mu        sync.Mutex
	token     string
	expiry    time.Time // when the token stops being valid
	refreshAt time.Time
	inflight  chan struct{} // closed when the running fetch ends
	lastErr   error
}

// tokenSources shares one source per service account and cache settings
// across routes, so every route of one account uses one cached token.
var tokenSources = struct {
	sync.Mutex
	m map[[32]byte]*tokenSource
}{m: map[[32]byte]*tokenSource{}}

// sharedTokenSource validates a service-account JSON and returns the
// process-wide source for it. field names the conf field for errors.
func sharedTokenSource(saJSON []byte, expireEarly, maxTTL time.Duration, field string) (*tokenSource, error) {
	cfg, err := google.JWTConfigFromJSON(saJSON, cloudPlatformScope)
	if err != nil {
		return nil, &ConfError{Field: field, Msg: "not a usable service-account JSON: " + shorten(err)}
	}
	if cfg.Email == "" || cfg.TokenURL == "" {
		return nil, &ConfError{Field: field, Msg: "service-account JSON lacks client_email or token_uri"}
	}
	if err := checkPrivateKey(cfg.PrivateKey); err != nil {
		return nil, &ConfError{Field: field, Msg: err.Error()}
	}
	key := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%d", saJSON, expireEarly, maxTTL))
	tokenSources.Lock()
	defer tokenSources.Unlock()
	if s, ok := tokenSources.m[key]; ok {
		return s, nil
	}
	s := &tokenSource{cfg: cfg, expireEarly: expireEarly, maxTTL: maxTTL, now: time.Now}
	s.fetch = s.fetchJWT
	tokenSources.m[key] = s
	return s, nil
}

// shorten bounds an error text from x/oauth2; its JSON decoding errors name
// fields and types, never values, so no key material reaches a log.
func shorten(err error) string {
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return msg
}

func checkPrivateKey(pemKey []byte) error {
	block, _ := pem.Decode(pemKey)
	if block == nil {
		return errors.New("private_key is not a PEM block")
	}
	if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		return nil
	}
	if _, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return nil
	}
	return errors.New("private_key is not an RSA private key")
}

// Token returns a valid access token. ctx bounds only this caller's wait;
// the fetch itself is shared and runs on its own bounded context.
func (s *tokenSource) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	now := s.now()
	if s.token != "" && now.Before(s.expiry) {
		if !now.Before(s.refreshAt) {
			s.startFetch()
		}
		tok := s.token
		s.mu.Unlock()
		return tok, nil
	}
	done := s.startFetch()
	s.mu.Unlock()

	select {
	case <-done:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != "" && s.now().Before(s.expiry) {
		return s.token, nil
	}
	if s.lastErr != nil {
		return "", s.lastErr
	}
	return "", errors.New("token endpoint returned an expired token")
}

// startFetch starts a fetch unless one runs; s.mu must be held.
func (s *tokenSource) startFetch() <-chan struct{} {
	if s.inflight != nil {
		return s.inflight
	}
	done := make(chan struct{})
	s.inflight = done
	go func() {
		defer close(done)
		tok, err := s.fetch()
		tokenStats.mu.Lock()
		tokenStats.fetches++
		if err != nil {
			tokenStats.failures++
		}
		tokenStats.mu.Unlock()

		s.mu.Lock()
		defer s.mu.Unlock()
		s.inflight = nil
		if err != nil {
			// Nothing is cached on failure: the next request tries again.
			s.lastErr = err
			return
		}
		now := s.now()
		s.lastErr = nil
		s.token = tok.AccessToken
		s.expiry = tok.Expiry
		if s.expiry.IsZero() {
			s.expiry = now.Add(time.Hour)
		}
		if s.maxTTL > 0 && s.expiry.After(now.Add(s.maxTTL)) {
			s.expiry = now.Add(s.maxTTL)
		}
		s.refreshAt = s.expiry.Add(-s.expireEarly)
	}()
	return done
}

func (s *tokenSource) fetchJWT() (*oauth2.Token, error) {
	ctx, cancel := context.WithTimeout(context.Background(), tokenFetchTimeout)
	defer cancel()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, tokenHTTPClient)
	// A fresh TokenSource holds no token, so Token always fetches; caching is
	// ours, with the conf's early-refresh window.
	tok, err := s.cfg.TokenSource(ctx).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil {
			return nil, fmt.Errorf("token endpoint answered %d: %s", re.Response.StatusCode, oauthErrorCode(re))
		}
		return nil, fmt.Errorf("token endpoint unreachable: %s", shorten(err))
	}
	return tok, nil
}

func oauthErrorCode(re *oauth2.RetrieveError) string {
	if re.ErrorCode != "" {
		if re.ErrorDescription != "" {
			return re.ErrorCode + " (" + re.ErrorDescription + ")"
		}
		return re.ErrorCode
	}
	return "no error code"
}
