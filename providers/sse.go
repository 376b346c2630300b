package providers

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// MaxEventSize bounds one server-sent event. Tool-call events can be large,
// but a stream that never ends an event must not grow without limit.
const MaxEventSize = 8 << 20

// ErrEventTooLarge is returned when an event exceeds MaxEventSize.
var ErrEventTooLarge = fmt.Errorf("server-sent event larger than %d bytes", MaxEventSize)

// EventReader splits a server-sent-event stream into whole events, so the
// relay can forward each one as soon as it is complete and observe it.
type EventReader struct {
	cr    crReader
	r     *bufio.Reader
	event []byte
}

// NewEventReader reads events from r through a buffer of size bytes.
func NewEventReader(r io.Reader, size int) *EventReader {
	e := &EventReader{}
	e.cr.r = r
	e.r = bufio.NewReaderSize(&e.cr, size)
	return e
}

// Reset reuses the reader for another stream.
func (e *EventReader) Reset(r io.Reader) {
	e.cr = crReader{r: r}
	e.r.Reset(&e.cr)
	e.event = e.event[:0]
}

// crReader turns the bare CRs that the SSE spec allows as line ends into
// LFs, so events split on LF alone; CRLF passes unchanged. A CR that ends
// one read becomes LF at once (the event must not wait for the next read),
// and an LF that then starts the next read is dropped.
type crReader struct {
	r      io.Reader
	skipLF bool
}

func (c *crReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n == 0 {
		return n, err
	}
	if c.skipLF {
		c.skipLF = false
		if p[0] == '\n' {
			copy(p, p[1:n])
			n--
		}
	}
	for i := bytes.IndexByte(p[:n], '\r'); i >= 0; {
		switch {
		case i == n-1:
			p[i] = '\n'
			c.skipLF = true
		case p[i+1] != '\n':
			p[i] = '\n'
		}
		j := bytes.IndexByte(p[i+1:n], '\r')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return n, err
}

// Next returns the raw bytes of the next event: its lines up to and including
// the blank line that ends it. Blank lines before an event are kept with it.
// At the end of the stream it returns what is left (maybe a partial event)
// with io.EOF. The slice is valid until the next call.
func (e *EventReader) Next() ([]byte, error) {
	e.event = e.event[:0]
	content := false
	for {
		line, err := e.r.ReadSlice('\n')
		if len(e.event)+len(line) > MaxEventSize {
			return nil, ErrEventTooLarge
		}
		e.event = append(e.event, line...)
		if errors.Is(err, bufio.ErrBufferFull) {
			content = true
			continue
		}
		if err != nil {
			return e.event, err
		}
		if isBlank(line) {
			if content {
				return e.event, nil
			}
			continue
		}
		content = true
	}
}

func isBlank(line []byte) bool {
	return len(bytes.TrimRight(line, "\r\n")) == 0
}

// EventData returns the data payload of a raw event: its "data:" lines with
// one leading space removed, joined by "\n". ok is false for events without
// data (comments such as ": keep-alive", blank lines).
func EventData(raw []byte) (data []byte, ok bool) {
	copied := false
	for len(raw) > 0 {
		var line []byte
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			line, raw = raw, nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		rest, found := bytes.CutPrefix(line, []byte("data:"))
		if !found {
			continue
		}
		rest = bytes.TrimPrefix(rest, []byte(" "))
		switch {
		case !ok:
			data = rest // usually the only data line: no copy
		case !copied:
			// A second data line: join into a fresh buffer, since appending
			// to a sub-slice of raw would overwrite raw.
			data = append(append(append([]byte(nil), data...), '\n'), rest...)
			copied = true
		default:
			data = append(append(data, '\n'), rest...)
		}
		ok = true
	}
	return data, ok
}

// IsDone reports the OpenAI family's end-of-stream marker.
func IsDone(data []byte) bool {
	return bytes.Equal(bytes.TrimSpace(data), []byte("[DONE]"))
}

// EventName is the "event:" field of a raw event, "" when it has none.
func EventName(raw []byte) string {
	for len(raw) > 0 {
		var line []byte
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			line, raw = raw, nil
		}
		if rest, ok := bytes.CutPrefix(bytes.TrimSuffix(line, []byte("\r")), []byte("event:")); ok {
			return string(bytes.TrimPrefix(rest, []byte(" ")))
		}
	}
	return ""
}
