package aiproxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"testing"
	"time"
)

func TestTickets(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tk := newTickets()
	tk.now = func() time.Time { return now }
	id := confID{1, 2, 3}

	s := tk.mint(id)
	got, err := tk.verify(s)
	if err != nil || got != id {
		t.Fatalf("verify(mint) = %v, %v", got, err)
	}

	raw, _ := base64.RawURLEncoding.DecodeString(s)
	forged := append([]byte(nil), raw...)
	forged[0] ^= 1 // another conf, same MAC
	tampered := append([]byte(nil), raw...)
	tampered[len(tampered)-1] ^= 1

	other := newTickets() // another process: another key
	other.now = tk.now

	cases := []struct {
		name   string
		ticket string
		want   error
	}{
		{"missing", "", errNoTicket},
		{"garbage", "not-a-ticket!", errBadTicket},
		{"short", base64.RawURLEncoding.EncodeToString(raw[:10]), errBadTicket},
		{"conf swapped", base64.RawURLEncoding.EncodeToString(forged), errBadTicket},
		{"mac tampered", base64.RawURLEncoding.EncodeToString(tampered), errBadTicket},
		{"other key", other.mint(id), errBadTicket},
	}
	for _, c := range cases {
		if _, err := tk.verify(c.ticket); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}

	// Each ticket is good for one call; verify does not use it up.
	if _, err := tk.use(s); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if _, err := tk.use(s); !errors.Is(err, errSpentTicket) {
		t.Fatalf("replay: err = %v", err)
	}
	if s2 := tk.mint(id); s2 == s {
		t.Fatal("two tickets for one conf in one second are the same")
	}

	now = now.Add(ticketTTL + time.Second)
	if _, err := tk.verify(s); !errors.Is(err, errExpiredTicket) {
		t.Fatalf("expired ticket: err = %v", err)
	}
}

// The spent set forgets nothing younger than ticketTTL.
func TestSpentSetKeepsATTL(t *testing.T) {
	var s spentSet
	now := time.Unix(1_800_000_000, 0)
	if !s.add(1, now) {
		t.Fatal("first add refused")
	}
	for _, d := range []time.Duration{time.Second, ticketTTL, ticketTTL + time.Second, 2 * ticketTTL} {
		if s.add(1, now.Add(d)) {
			t.Fatalf("serial 1 accepted again %v later", d)
		}
	}
}

// The stack-buffer MAC is HMAC-SHA256 as crypto/hmac computes it.
func TestTicketMACIsHMAC(t *testing.T) {
	var key [32]byte
	for i := range key {
		key[i] = byte(i * 7)
	}
	tk := &tickets{}
	for i := range tk.ipad {
		var k byte
		if i < len(key) {
			k = key[i]
		}
		tk.ipad[i], tk.opad[i] = k^0x36, k^0x5c
	}
	payload := []byte("0123456789abcdef0123456789abcdef")[:ticketPayloadLen]
	m := hmac.New(sha256.New, key[:])
	m.Write(payload)
	want := m.Sum(nil)[:ticketMACLen]
	got := make([]byte, ticketMACLen)
	tk.mac(got, payload)
	if !hmac.Equal(got, want) {
		t.Fatalf("mac %x, want %x", got, want)
	}
}

// Confs APISIX stopped using (a route edited or deleted) are dropped once
// no ticket for them can still be valid.
func TestConfRegistryDropsUnusedConfs(t *testing.T) {
	r := newConfRegistry[*Conf](10 * time.Millisecond)
	old, cur := ParseConf([]byte(`{"provider":"openai","auth":{}}`)), ParseConf([]byte(`{"provider":"openai","auth":{}}`))
	r.put(old)
	time.Sleep(1100 * time.Millisecond) // keep plus the registry's second of slack
	r.put(cur)
	if r.get(old.ID) != nil {
		t.Error("an unused conf was kept")
	}
	if r.get(cur.ID) == nil {
		t.Error("the conf in use was dropped")
	}
}
