// Package faketoken is an offline Google OAuth2 token endpoint for the
// service-account JWT-bearer flow (providers.md §6). It really verifies the
// RS256 assertion that golang.org/x/oauth2 (or any client) signs, issues
// short opaque access tokens, counts calls, and can fail or stall on demand
// so token caching, single-flight and error paths are testable.
//
// It does not import testing; Close leaves no goroutine behind.
package faketoken

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"
)

// JWTBearerGrant is the grant_type of the service-account flow.
const JWTBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// DefaultExpiresIn is the lifetime of issued tokens until SetExpiresIn.
const DefaultExpiresIn = 3599 * time.Second

// Server is the token endpoint.
type Server struct {
	URL      string // http://127.0.0.1:port
	TokenURL string // URL + "/token": the token_uri and the aud assertions must carry

	pub         *rsa.PublicKey
	kid         string
	clientEmail string
	ts          *httptest.Server
	now         func() time.Time // replaced by this package's tests to expire tokens without sleeping

	ctx       context.Context // ends on Close, releasing stalled calls
	cancel    context.CancelFunc
	closeOnce sync.Once

	mu        sync.Mutex
	calls     int
	failNext  int
	gate      <-chan struct{}
	held      chan struct{}
	expiresIn time.Duration
	tokens    map[string]time.Time // issued token → expiry
}

// Start serves a token endpoint that accepts assertions signed by the key
// pub (with kid KeyID(pub)) and issued by clientEmail.
func Start(pub *rsa.PublicKey, clientEmail string) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		pub: pub, kid: KeyID(pub), clientEmail: clientEmail, now: time.Now,
		ctx: ctx, cancel: cancel, expiresIn: DefaultExpiresIn, tokens: map[string]time.Time{},
	}
	s.ts = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	s.URL = s.ts.URL
	s.TokenURL = s.URL + "/token"
	return s
}

// StartWithAccount generates a key, starts a Server trusting it, and returns
// the service account JSON whose token_uri is the server's TokenURL.
func StartWithAccount() (*Server, []byte, error) {
	// The key must exist before the server (which trusts it) and the JSON
	// after it (which names its URL), hence the two steps.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	s := Start(&key.PublicKey, ClientEmail)
	sa, err := ServiceAccountJSON(key, s.TokenURL)
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	return s, sa, nil
}

// Calls counts requests to /token, failed ones included.
func (s *Server) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// Valid reports whether token was issued by this server and has not expired.
// Tokens are "ya29.fake-<n>", n being the call that issued it (1-based).
func (s *Server) Valid(token string) bool {
	s.mu.Lock()
	exp, ok := s.tokens[token]
	s.mu.Unlock()
	return ok && s.now().Before(exp)
}

// SetExpiresIn sets expires_in (whole seconds) and the real lifetime of the
// tokens issued from now on. Note that x/oauth2 reads expires_in 0 as "never
// expires".
func (s *Server) SetExpiresIn(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expiresIn = d
}

// Fail makes the next n calls answer 500 {"error":"internal_failure",...}
// without looking at them: the endpoint is down. (Bad assertions get 400
// invalid_grant on their own.)
func (s *Server) Fail(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = n
}

// Stall holds the next call until gate is closed (or the caller gives up,
// or Close), then answers it normally. The returned channel is closed when
// that call has arrived and is being held, so a test knows without sleeping
// that the client is waiting. A second Stall before a call arrives replaces
// the first.
func (s *Server) Stall(gate <-chan struct{}) (held <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gate, s.held = gate, make(chan struct{})
	return s.held
}

// Close stops the server, releasing stalled calls first.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.cancel()
		s.ts.CloseClientConnections()
		s.ts.Close()
	})
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/token" {
		writeJSON(w, http.StatusNotFound, oauthError{"invalid_request", "no such endpoint: " + r.URL.Path})
		return
	}
	s.mu.Lock()
	s.calls++
	n := s.calls
	fail := s.failNext > 0
	if fail {
		s.failNext--
	}
	gate, held := s.gate, s.held
	s.gate, s.held = nil, nil
	lifetime := s.expiresIn
	s.mu.Unlock()

	if held != nil {
		close(held)
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		case <-s.ctx.Done():
			writeJSON(w, http.StatusServiceUnavailable, oauthError{"temporarily_unavailable", "token server closed"})
			return
		}
	}
	if fail {
		writeJSON(w, http.StatusInternalServerError, oauthError{"internal_failure", "fake token endpoint told to fail (Fail)"})
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, oauthError{"invalid_request", "the token endpoint takes POST"})
		return
	}
	if err := s.verify(r); err != nil {
		writeJSON(w, http.StatusBadRequest, oauthError{"invalid_grant", err.Error()})
		return
	}

	token := fmt.Sprintf("ya29.fake-%d", n)
	s.mu.Lock()
	s.tokens[token] = s.now().Add(lifetime)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
		TokenType   string `json:"token_type"`
	}{token, int64(lifetime / time.Second), "Bearer"})
}

// verify checks the form and the assertion as Google does.
func (s *Server) verify(r *http.Request) error {
	if err := r.ParseForm(); err != nil {
		return fmt.Errorf("Bad Request: %v", err)
	}
	if gt := r.PostForm.Get("grant_type"); gt != JWTBearerGrant {
		return fmt.Errorf("Invalid grant_type: %q", gt)
	}
	c, err := parseAssertion(r.PostForm.Get("assertion"), s.pub, s.kid)
	if err != nil {
		return err
	}
	return c.check(s.clientEmail, s.TokenURL, s.now())
}

type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
