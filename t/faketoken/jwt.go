package faketoken

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Google's error_description texts for the failures clients meet most.
const (
	errSignature = "Invalid JWT Signature."
	errTimes     = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim."
)

// maxLifetime and maxSkew bound an assertion's iat/exp, as Google does.
const (
	maxLifetime = time.Hour
	maxSkew     = time.Minute
)

// claims are the JWT-bearer assertion fields the token endpoint checks.
type claims struct {
	Iss   string          `json:"iss"`
	Scope string          `json:"scope"`
	Aud   json.RawMessage `json:"aud"` // a string from x/oauth2; an array is legal JWT too
	Iat   int64           `json:"iat"`
	Exp   int64           `json:"exp"`
}

// parseAssertion verifies an RS256 JWT against pub and returns its claims.
// kid must match the header's key id: Google picks the verification key by
// it, so a wrong kid fails like a wrong signature.
func parseAssertion(assertion string, pub *rsa.PublicKey, kid string) (*claims, error) {
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return nil, errors.New("Invalid JWT: the assertion is not header.claims.signature")
	}
	var header struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := decodeSegment(parts[0], &header); err != nil {
		return nil, fmt.Errorf("Invalid JWT: bad header: %v", err)
	}
	if header.Alg != "RS256" {
		return nil, fmt.Errorf("Invalid JWT: alg %q, want RS256", header.Alg)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || header.Kid != kid {
		return nil, errors.New(errSignature)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) != nil {
		return nil, errors.New(errSignature)
	}
	var c claims
	if err := decodeSegment(parts[1], &c); err != nil {
		return nil, fmt.Errorf("Invalid JWT: bad claims: %v", err)
	}
	return &c, nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// check applies Google's rules for a service account's assertion.
func (c *claims) check(clientEmail, tokenURL string, now time.Time) error {
	if c.Iss != clientEmail {
		return errors.New("Invalid grant: account not found")
	}
	if !c.audience(tokenURL) {
		return fmt.Errorf("Invalid JWT: Failed audience check. The right audience is %s", tokenURL)
	}
	if !slices.Contains(strings.Fields(c.Scope), CloudPlatformScope) {
		return fmt.Errorf("Invalid OAuth scope or ID token audience provided: the assertion must request %s", CloudPlatformScope)
	}
	iat, exp := time.Unix(c.Iat, 0), time.Unix(c.Exp, 0)
	if life := exp.Sub(iat); life <= 0 || life > maxLifetime || iat.After(now.Add(maxSkew)) || !exp.After(now) {
		return errors.New(errTimes)
	}
	return nil
}

func (c *claims) audience(want string) bool {
	var one string
	if json.Unmarshal(c.Aud, &one) == nil {
		return one == want
	}
	var many []string
	return json.Unmarshal(c.Aud, &many) == nil && slices.Contains(many, want)
}
