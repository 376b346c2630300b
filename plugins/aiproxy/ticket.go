package aiproxy

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
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
	key []byte
	now func() time.Time
}

func newTickets() *tickets {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		panic("ai-proxy: no randomness for the ticket key: " + err.Error())
	}
	return &tickets{key: key, now: time.Now}
}

func (t *tickets) mint(id confID) string {
	var buf [ticketLen]byte
	copy(buf[:], id[:])
	binary.BigEndian.PutUint64(buf[len(id):], uint64(t.now().Add(ticketTTL).Unix()))
	copy(buf[ticketPayloadLen:], t.mac(buf[:ticketPayloadLen]))
	return base64.RawURLEncoding.EncodeToString(buf[:])
}

func (t *tickets) verify(s string) (confID, error) {
	var id confID
	if s == "" {
		return id, errNoTicket
	}
	buf, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(buf) != ticketLen {
		return id, errBadTicket
	}
	if !hmac.Equal(buf[ticketPayloadLen:], t.mac(buf[:ticketPayloadLen])) {
		return id, errBadTicket
	}
	// The expiry is checked only after the MAC, so a forger learns nothing.
	if int64(binary.BigEndian.Uint64(buf[len(id):ticketPayloadLen])) < t.now().Unix() {
		return id, errExpiredTicket
	}
	copy(id[:], buf)
	return id, nil
}

func (t *tickets) mac(payload []byte) []byte {
	m := hmac.New(sha256.New, t.key)
	m.Write(payload)
	return m.Sum(nil)[:ticketMACLen]
}
