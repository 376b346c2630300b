package faketoken

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/url"
)

// The service account NewServiceAccount describes, named like the seed's.
const (
	ProjectID   = "api7-vertex"
	ClientEmail = "api7-docs@api7-vertex.iam.gserviceaccount.com"
	// CloudPlatformScope is the scope Vertex needs; the token endpoint
	// refuses assertions without it.
	CloudPlatformScope = "https://www.googleapis.com/auth/cloud-platform"
)

// serviceAccount is the JSON key file Google issues, field for field and in
// the same order (providers.md §6, seed).
type serviceAccount struct {
	Type                    string `json:"type"`
	ProjectID               string `json:"project_id"`
	PrivateKeyID            string `json:"private_key_id"`
	PrivateKey              string `json:"private_key"`
	ClientEmail             string `json:"client_email"`
	ClientID                string `json:"client_id"`
	AuthURI                 string `json:"auth_uri"`
	TokenURI                string `json:"token_uri"`
	AuthProviderX509CertURL string `json:"auth_provider_x509_cert_url"`
	ClientX509CertURL       string `json:"client_x509_cert_url"`
	UniverseDomain          string `json:"universe_domain"`
}

// NewServiceAccount generates a 2048-bit RSA key and returns a service
// account JSON for it whose token_uri is tokenURL. To point it at a token
// Server, either pass s.TokenURL here and trust the key with Start, or use
// StartWithAccount.
func NewServiceAccount(tokenURL string) (saJSON []byte, key *rsa.PrivateKey, err error) {
	key, err = rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	saJSON, err = ServiceAccountJSON(key, tokenURL)
	if err != nil {
		return nil, nil, err
	}
	return saJSON, key, nil
}

// ServiceAccountJSON writes the service account JSON for an existing key:
// PKCS#8 PEM private_key, private_key_id = KeyID(&key.PublicKey), client
// email ClientEmail, token_uri = tokenURL.
func ServiceAccountJSON(key *rsa.PrivateKey, tokenURL string) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	kid := KeyID(&key.PublicKey)
	// A 21-digit numeric id like Google's, stable for the key.
	clientID := fmt.Sprintf("1%020d", binary.BigEndian.Uint64([]byte(kid)))
	sa := serviceAccount{
		Type:                    "service_account",
		ProjectID:               ProjectID,
		PrivateKeyID:            kid,
		PrivateKey:              string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		ClientEmail:             ClientEmail,
		ClientID:                clientID,
		AuthURI:                 "https://accounts.google.com/o/oauth2/auth",
		TokenURI:                tokenURL,
		AuthProviderX509CertURL: "https://www.googleapis.com/oauth2/v1/certs",
		ClientX509CertURL:       "https://www.googleapis.com/robot/v1/metadata/x509/" + url.QueryEscape(ClientEmail),
		UniverseDomain:          "googleapis.com",
	}
	return json.MarshalIndent(sa, "", "  ")
}

// KeyID is the private_key_id of a key: 40 hex digits like Google's,
// derived from the public key so the token server knows which kid to
// expect without being told.
func KeyID(pub *rsa.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic("faketoken: " + err.Error()) // cannot fail for an RSA key
	}
	sum := sha1.Sum(der)
	return hex.EncodeToString(sum[:])
}
