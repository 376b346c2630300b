package fakes

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2/google"
)

// The fake accepts exactly what golang.org/x/oauth2 sends for a service
// account, and refuses assertions signed for another audience or key.
func TestTokenEndpoint(t *testing.T) {
	tok, err := StartToken()
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	cfg, err := google.JWTConfigFromJSON(tok.SAJSON, cloudPlatform)
	if err != nil {
		t.Fatal(err)
	}
	got, err := cfg.TokenSource(context.Background()).Token()
	if err != nil || !tok.Valid(got.AccessToken) || tok.Calls() != 1 {
		t.Fatalf("%v %v calls=%d", got, err, tok.Calls())
	}

	other, _ := StartToken() // another key
	defer other.Close()
	cfg2, _ := google.JWTConfigFromJSON(other.SAJSON, cloudPlatform)
	cfg2.TokenURL, cfg2.Audience = tok.TokenURL, tok.TokenURL
	if _, err := cfg2.TokenSource(context.Background()).Token(); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("foreign key accepted: %v", err)
	}
	cfg.Audience = "https://elsewhere/token"
	if _, err := cfg.TokenSource(context.Background()).Token(); err == nil {
		t.Fatal("wrong audience accepted")
	}
	resp, _ := http.PostForm(tok.TokenURL, url.Values{"grant_type": {"password"}})
	if resp.StatusCode != 400 {
		t.Fatalf("wrong grant: %d", resp.StatusCode)
	}
	resp.Body.Close()
}
