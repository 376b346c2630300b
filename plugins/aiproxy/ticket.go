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
	now func() time.Time
	// ipad and opad are the process key XOR-ed for HMAC (RFC 2104),
	// precomputed so minting a ticket allocates nothing but its text.
	ipad, opad [sha256.BlockSize]byte
}

func newTickets() *tickets {
	t := &tickets{now: time.Now}
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		panic("ai-proxy: no randomness for the ticket key: " + err.Error())
	}
	for i := range t.ipad {
		var k byte
		if i < len(key) {
			k = key[i]
		}
		t.ipad[i], t.opad[i] = k^0x36, k^0x5c
	}
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

// mac writes the truncated HMAC-SHA256 of a ticket payload into dst,
// computed on stack buffers (crypto/hmac would allocate per call).
func (t *tickets) mac(dst, payload []byte) {
	var in [sha256.BlockSize + ticketPayloadLen]byte
	copy(in[:], t.ipad[:])
	copy(in[sha256.BlockSize:], payload)
	inner := sha256.Sum256(in[:])
	var out [sha256.BlockSize + sha256.Size]byte
	copy(out[:], t.opad[:])
	copy(out[sha256.BlockSize:], inner[:])
	sum := sha256.Sum256(out[:])
	copy(dst, sum[:])
}
