package httpsproxy

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
)

func TestProxyTerminatesTLSForAnyHost(t *testing.T) {
	p, err := Start(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Host+r.URL.Path)
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := p.WriteCA(ca); err != nil {
		t.Fatal(err)
	}
	pem, _ := os.ReadFile(ca)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	proxyURL, _ := url.Parse(p.URL())
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("https://api.openai.com/v1/chat/completions")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "api.openai.com/v1/chat/completions" {
		t.Fatalf("backend saw %q", body)
	}
	if c := p.Connects(); len(c) != 1 || c[0] != "api.openai.com:443" {
		t.Fatalf("connects %v", c)
	}
}
