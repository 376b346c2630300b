package aiproxy

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash"
	"sync"
	"time"
)

// TicketHeader carries the relay ticket from the pre-req filter, through
// APISIX, to the relay. APISIX's Rewrite replaces any value a client sent.
const TicketHeader = "X-AI-Proxy-Ticket"

// ticketTTL bounds how long APISIX may take between running the filter and
// reaching the relay; it includes reading the client's body, which nginx
// does before it connects upstream.
const ticketTTL = 5 * time.Minute

const (
	ticketPayloadLen = len(confID{}) + 8 // conf id, expiry (unix seconds)
	ticketMACLen     = 16
	ticketLen        = ticketPayloadLen + ticketMACLen
)

var (
	errNoTicket      = errors.New("request has no relay ticket")
	errBadTicket     = errors.New("relay ticket is invalid")
	errExpiredTicket = errors.New("relay ticket has expired")
)

// tickets mints and checks relay tickets: HMAC-SHA256 over (conf id,
// expiry) with a key that exists only in this process, so nothing outside
// the runner can make one, and one ticket names exactly one conf.
type tickets struct {
	now  func() time.Time
	macs sync.Pool // of hash.Hash keyed with the process key: minting is per request
}

func newTickets() *tickets {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		panic("ai-proxy: no randomness for the ticket key: " + err.Error())
	}
	t := &tickets{now: time.Now}
	t.macs.New = func() any { return hmac.New(sha256.New, key) }
	return t
}

func (t *tickets) mint(id confID) string {
	var buf [ticketLen]byte
	copy(buf[:], id[:])
	binary.BigEndian.PutUint64(buf[len(id):], uint64(t.now().Add(ticketTTL).Unix()))
	t.mac(buf[ticketPayloadLen:], buf[:ticketPayloadLen])
	var out [(ticketLen*8 + 5) / 6]byte
	base64.RawURLEncoding.Encode(out[:], buf[:])
	return string(out[:])
}

func (t *tickets) verify(s string) (confID, error) {
	var id confID
	if s == "" {
		return id, errNoTicket
	}
	var buf [ticketLen]byte
	if base64.RawURLEncoding.DecodedLen(len(s)) != ticketLen {
		return id, errBadTicket
	}
	if n, err := base64.RawURLEncoding.Decode(buf[:], []byte(s)); err != nil || n != ticketLen {
		return id, errBadTicket
	}
	var want [ticketMACLen]byte
	t.mac(want[:], buf[:ticketPayloadLen])
	if !hmac.Equal(buf[ticketPayloadLen:], want[:]) {
		return id, errBadTicket
	}
	// The expiry is checked only after the MAC, so a forger learns nothing.
	if int64(binary.BigEndian.Uint64(buf[len(id):ticketPayloadLen])) < t.now().Unix() {
		return id, errExpiredTicket
	}
	copy(id[:], buf[:])
	return id, nil
}

// mac writes the truncated HMAC of payload into dst.
func (t *tickets) mac(dst, payload []byte) {
	m := t.macs.Get().(hash.Hash)
	m.Reset()
	m.Write(payload)
	var sum [sha256.Size]byte
	copy(dst, m.Sum(sum[:0]))
	t.macs.Put(m)
}
