package aiproxy

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// TicketHeader carries the relay ticket from the pre-req filter, through
// APISIX, to the relay. APISIX's Rewrite replaces any value a client sent.
const TicketHeader = "X-AI-Proxy-Ticket"

// ticketTTL bounds how long APISIX may take between running the filter and
// reaching the relay; it includes reading the client's body, which nginx
// does before it connects upstream.
const ticketTTL = 2 * time.Minute

const (
	ticketPayloadLen = len(confID{}) + 8 + 8 // conf id, expiry (unix seconds), serial
	ticketMACLen     = 16
	ticketLen        = ticketPayloadLen + ticketMACLen
)

var (
	errNoTicket      = errors.New("request has no relay ticket")
	errBadTicket     = errors.New("relay ticket is invalid")
	errExpiredTicket = errors.New("relay ticket has expired")
	errSpentTicket   = errors.New("relay ticket was already used")
)

// tickets mints and checks relay tickets: HMAC-SHA256 over (conf id,
// expiry, serial) with a key that exists only in this process, so nothing
// outside the runner can make one, one ticket names exactly one conf, and
// each is good for one call.
type tickets struct {
	now    func() time.Time
	serial atomic.Uint64 // makes each ticket unique, so each is good once
	spent  spentSet
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
	binary.BigEndian.PutUint64(buf[len(id)+8:], t.serial.Add(1))
	t.mac(buf[ticketPayloadLen:], buf[:ticketPayloadLen])
	var out [(ticketLen*8 + 5) / 6]byte
	base64.RawURLEncoding.Encode(out[:], buf[:])
	return string(out[:])
}

// verify checks a ticket without using it up (the relay's routing asks).
func (t *tickets) verify(s string) (confID, error) {
	id, _, err := t.check(s)
	return id, err
}

// use checks a ticket and spends it: a replayed ticket is refused.
func (t *tickets) use(s string) (confID, error) {
	id, serial, err := t.check(s)
	if err == nil && !t.spent.add(serial, t.now()) {
		return id, errSpentTicket
	}
	return id, err
}

func (t *tickets) check(s string) (confID, uint64, error) {
	var id confID
	if s == "" {
		return id, 0, errNoTicket
	}
	var buf [ticketLen]byte
	if base64.RawURLEncoding.DecodedLen(len(s)) != ticketLen {
		return id, 0, errBadTicket
	}
	if n, err := base64.RawURLEncoding.Decode(buf[:], []byte(s)); err != nil || n != ticketLen {
		return id, 0, errBadTicket
	}
	var want [ticketMACLen]byte
	t.mac(want[:], buf[:ticketPayloadLen])
	if !hmac.Equal(buf[ticketPayloadLen:], want[:]) {
		return id, 0, errBadTicket
	}
	// The expiry is checked only after the MAC, so a forger learns nothing.
	if int64(binary.BigEndian.Uint64(buf[len(id):len(id)+8])) < t.now().Unix() {
		return id, 0, errExpiredTicket
	}
	copy(id[:], buf[:])
	return id, binary.BigEndian.Uint64(buf[len(id)+8 : ticketPayloadLen]), nil
}

// spentSet remembers used ticket serials for at least ticketTTL (after
// which the ticket has expired anyway): two generations, the older dropped
// whole every ticketTTL, so memory is bounded by the calls of two TTLs.
type spentSet struct {
	mu        sync.Mutex
	cur, prev map[uint64]struct{}
	rotated   time.Time
}

func (s *spentSet) add(serial uint64, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil || now.Sub(s.rotated) > ticketTTL {
		s.prev, s.cur, s.rotated = s.cur, make(map[uint64]struct{}, len(s.cur)), now
	}
	if _, ok := s.cur[serial]; ok {
		return false
	}
	if _, ok := s.prev[serial]; ok {
		return false
	}
	s.cur[serial] = struct{}{}
	return true
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
