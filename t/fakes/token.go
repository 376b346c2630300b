package fakes

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

const (
	jwtBearer     = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	cloudPlatform = "https://www.googleapis.com/auth/cloud-platform"
)

// Token is a fake Google OAuth2 token endpoint (providers.md §6): it checks
// the service account's signed JWT assertion and issues access tokens.
type Token struct {
	URL, TokenURL string
	SAJSON        []byte // a service account whose token_uri is TokenURL
	srv           *httptest.Server
	key           *rsa.PrivateKey
	email         string

	mu        sync.Mutex
	calls     int
	expiresIn time.Duration
	fail      int
	stall     <-chan struct{}
	issued    map[string]time.Time
}

// StartToken starts the endpoint with a fresh service account.
func StartToken() (*Token, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	t := &Token{key: key, email: "api7-docs@api7-vertex.iam.gserviceaccount.com", expiresIn: 3599 * time.Second, issued: map[string]time.Time{}}
	t.srv = httptest.NewServer(http.HandlerFunc(t.serve))
	t.URL = t.srv.URL
	t.TokenURL = t.srv.URL + "/token"
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	t.SAJSON, _ = json.Marshal(map[string]string{
		"type": "service_account", "project_id": "api7-vertex", "private_key_id": "fake-key-1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": t.email, "client_id": "1234567890",
		"auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": t.TokenURL,
		"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
		"client_x509_cert_url":        "https://www.googleapis.com/robot/v1/metadata/x509/api7-docs%40api7-vertex.iam.gserviceaccount.com",
		"universe_domain":             "googleapis.com",
	})
	return t, nil
}

// Close stops the endpoint.
func (t *Token) Close() { t.srv.Close() }

// Calls counts token requests, failed ones included.
func (t *Token) Calls() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.calls
}

// Valid reports a token this endpoint issued that has not expired.
func (t *Token) Valid(token string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	exp, ok := t.issued[token]
	return ok && time.Now().Before(exp)
}

// Issued lists every token handed out (to check none reaches a log).
func (t *Token) Issued() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for k := range t.issued {
		out = append(out, k)
	}
	return out
}

// SetExpiresIn sets the lifetime of the next tokens.
func (t *Token) SetExpiresIn(d time.Duration) {
	t.mu.Lock()
	t.expiresIn = d
	t.mu.Unlock()
}

// Fail makes the next n requests answer 400 invalid_grant.
func (t *Token) Fail(n int) {
	t.mu.Lock()
	t.fail = n
	t.mu.Unlock()
}

// Stall holds the next requests until gate closes.
func (t *Token) Stall(gate <-chan struct{}) {
	t.mu.Lock()
	t.stall = gate
	t.mu.Unlock()
}

func (t *Token) serve(w http.ResponseWriter, r *http.Request) {
	t.mu.Lock()
	t.calls++
	n := t.calls
	failing := t.fail > 0
	if failing {
		t.fail--
	}
	stall := t.stall
	expiresIn := t.expiresIn
	t.mu.Unlock()
	if stall != nil {
		select {
		case <-stall:
		case <-r.Context().Done():
			return
		}
	}
	grantErr := func(desc string) {
		writeJSON(w, 400, map[string]string{"error": "invalid_grant", "error_description": desc})
	}
	if failing {
		grantErr("scripted failure")
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/token" {
		http.NotFound(w, r)
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != jwtBearer {
		writeJSON(w, 400, map[string]string{"error": "unsupported_grant_type", "error_description": "Invalid grant_type"})
		return
	}
	if problem := t.verify(r.PostForm.Get("assertion")); problem != "" {
		grantErr(problem)
		return
	}
	tok := fmt.Sprintf("ya29.fake-%d", n)
	t.mu.Lock()
	t.issued[tok] = time.Now().Add(expiresIn)
	t.mu.Unlock()
	writeJSON(w, 200, map[string]any{"access_token": tok, "expires_in": int(expiresIn.Seconds()), "token_type": "Bearer"})
}

// verify checks the RS256 signature and the claims Google checks; it
// returns Google's error_description for a bad assertion, "" for a good one.
func (t *Token) verify(assertion string) string {
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return "Invalid JWT: not three parts"
	}
	var hdr struct{ Alg, Kid string }
	if err := decodeSegment(parts[0], &hdr); err != nil || hdr.Alg != "RS256" || hdr.Kid != "fake-key-1" {
		return "Invalid JWT header"
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return "Invalid JWT Signature."
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(&t.key.PublicKey, crypto.SHA256, sum[:], sig) != nil {
		return "Invalid JWT Signature."
	}
	var c struct {
		Iss, Scope, Aud string
		Iat, Exp        int64
	}
	if err := decodeSegment(parts[1], &c); err != nil {
		return "Invalid JWT claims"
	}
	now := time.Now().Unix()
	switch {
	case c.Iss != t.email:
		return "Invalid JWT: iss"
	case c.Aud != t.TokenURL:
		return "Invalid JWT: aud"
	case !strings.Contains(" "+c.Scope+" ", " "+cloudPlatform+" "):
		return "Invalid JWT: scope"
	case c.Exp-c.Iat <= 0 || c.Exp-c.Iat > 3600 || c.Iat > now+60:
		return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
	}
	return ""
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
