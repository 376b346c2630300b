package providers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// stubSource is a tokenSource whose fetches are counted and scripted.
func stubSource(early, maxTTL time.Duration, fetch func(n int64) (*oauth2.Token, error)) (*tokenSource, *atomic.Int64) {
	var calls atomic.Int64
	s := &tokenSource{expireEarly: early, maxTTL: maxTTL, now: time.Now}
	s.fetch = func() (*oauth2.Token, error) { return fetch(calls.Add(1)) }
	return s, &calls
}

func waitIdle(s *tokenSource) {
	s.mu.Lock()
	ch := s.inflight
	s.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

// A cold cache under load makes one token request, not one per caller.
func TestTokenSingleFlight(t *testing.T) {
	release := make(chan struct{})
	s, calls := stubSource(time.Minute, 0, func(n int64) (*oauth2.Token, error) {
		<-release
		return &oauth2.Token{AccessToken: fmt.Sprint("tok-", n), Expiry: time.Now().Add(time.Hour)}, nil
	})
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	started := make(chan struct{}, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started <- struct{}{}
			tok, err := s.Token(context.Background())
			if err == nil && tok != "tok-1" {
				err = fmt.Errorf("token %q", tok)
			}
			errs <- err
		}()
	}
	for range 50 {
		<-started
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("%d fetches", calls.Load())
	}
}

// Within expire_early of its end a token is still served while one
// background fetch replaces it.
func TestTokenRefreshedEarly(t *testing.T) {
	now := time.Now()
	s, calls := stubSource(time.Minute, 0, func(n int64) (*oauth2.Token, error) {
		return &oauth2.Token{AccessToken: fmt.Sprint("tok-", n), Expiry: now.Add(90 * time.Second)}, nil
	})
	s.now = func() time.Time { return now }
	if tok, _ := s.Token(context.Background()); tok != "tok-1" {
		t.Fatal(tok)
	}
	now = now.Add(45 * time.Second) // 45 s left: inside the 60 s window
	if tok, _ := s.Token(context.Background()); tok != "tok-1" {
		t.Fatalf("served %q while refreshing", tok)
	}
	waitIdle(s)
	if tok, _ := s.Token(context.Background()); tok != "tok-2" || calls.Load() != 2 {
		t.Fatalf("after refresh: %q, %d fetches", tok, calls.Load())
	}
}

func TestTokenMaxTTL(t *testing.T) {
	now := time.Now()
	s, calls := stubSource(0, 10*time.Second, func(n int64) (*oauth2.Token, error) {
		return &oauth2.Token{AccessToken: fmt.Sprint("tok-", n), Expiry: now.Add(time.Hour)}, nil
	})
	s.now = func() time.Time { return now }
	s.Token(context.Background())
	now = now.Add(11 * time.Second)
	if tok, _ := s.Token(context.Background()); tok != "tok-2" || calls.Load() != 2 {
		t.Fatalf("max_ttl ignored: %q", tok)
	}
}

// A failed fetch is not cached: the caller gets the error, the next caller
// tries again.
func TestTokenFailureThenRecovery(t *testing.T) {
	s, calls := stubSource(time.Minute, 0, func(n int64) (*oauth2.Token, error) {
		if n == 1 {
			return nil, errors.New("token endpoint answered 400: invalid_grant")
		}
		return &oauth2.Token{AccessToken: "tok", Expiry: time.Now().Add(time.Hour)}, nil
	})
	if _, err := s.Token(context.Background()); err == nil {
		t.Fatal("want error")
	}
	if tok, err := s.Token(context.Background()); err != nil || tok != "tok" || calls.Load() != 2 {
		t.Fatalf("%q %v %d", tok, err, calls.Load())
	}
}

// A caller that gives up does not cancel the shared fetch.
func TestTokenCallerCancel(t *testing.T) {
	release := make(chan struct{})
	s, _ := stubSource(time.Minute, 0, func(int64) (*oauth2.Token, error) {
		<-release
		return &oauth2.Token{AccessToken: "tok", Expiry: time.Now().Add(time.Hour)}, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Token(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	close(release)
	if tok, err := s.Token(context.Background()); err != nil || tok != "tok" {
		t.Fatalf("%q %v", tok, err)
	}
}
