package providers

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func readAll(t *testing.T, stream string, size int) (events []string, last error) {
	t.Helper()
	er := NewEventReader(strings.NewReader(stream), size)
	for {
		raw, err := er.Next()
		if len(raw) > 0 {
			events = append(events, string(raw))
		}
		if err != nil {
			return events, err
		}
	}
}

// Each event comes back whole, with the blank line that ends it, so the
// relay can forward it byte for byte.
func TestEventReaderSplitsOnBlankLines(t *testing.T) {
	got, err := readAll(t, "data: {\"a\":1}\n\ndata: [DONE]\n\n", 4096)
	if !errors.Is(err, io.EOF) || len(got) != 2 || got[0] != "data: {\"a\":1}\n\n" || got[1] != "data: [DONE]\n\n" {
		t.Fatalf("got %q, %v", got, err)
	}
}

// Gemini's native API and some proxies end events with CRLF CRLF.
func TestEventReaderAcceptsCRLF(t *testing.T) {
	got, _ := readAll(t, "data: 1\r\n\r\ndata: 2\r\n\r\n", 4096)
	if len(got) != 2 {
		t.Fatalf("got %q", got)
	}
	if d, ok := EventData([]byte(got[1])); !ok || string(d) != "2" {
		t.Fatalf("data = %q, %v", d, ok)
	}
}

// DeepSeek's keep-alive comments are events of their own, without data: the
// relay forwards them but must not count them as the first token.
func TestKeepAliveCommentHasNoData(t *testing.T) {
	got, _ := readAll(t, ": keep-alive\n\ndata: x\n\n", 4096)
	if len(got) != 2 {
		t.Fatalf("got %q", got)
	}
	if _, ok := EventData([]byte(got[0])); ok {
		t.Fatal("comment reported data")
	}
}

// Blank lines before the first event travel with it instead of making
// empty events.
func TestLeadingBlankLinesJoinTheNextEvent(t *testing.T) {
	got, _ := readAll(t, "\n\n\ndata: x\n\n", 4096)
	if len(got) != 1 || got[0] != "\n\n\ndata: x\n\n" {
		t.Fatalf("got %q", got)
	}
}

// Tool-call events can outgrow the read buffer; they must arrive whole.
func TestEventLargerThanBuffer(t *testing.T) {
	big := strings.Repeat("x", 100_000)
	got, _ := readAll(t, "data: "+big+"\n\n", 16)
	if len(got) != 1 {
		t.Fatalf("%d events", len(got))
	}
	if d, _ := EventData([]byte(got[0])); string(d) != big {
		t.Fatal("event data damaged")
	}
}

// A stream cut without a final blank line still yields its last bytes, with
// io.EOF, so the relay can forward them and log the truncation.
func TestTruncatedStream(t *testing.T) {
	got, err := readAll(t, "data: 1\n\ndata: {\"partial", 4096)
	if !errors.Is(err, io.EOF) || len(got) != 2 || got[1] != "data: {\"partial" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestOversizedEventIsAnError(t *testing.T) {
	_, err := readAll(t, strings.Repeat("x", MaxEventSize+10), 4096)
	if !errors.Is(err, ErrEventTooLarge) {
		t.Fatalf("err = %v", err)
	}
}

// Multi-line data joins with "\n" and leaves the raw event intact.
func TestEventDataJoinsLines(t *testing.T) {
	raw := []byte("event: message\ndata:first\ndata: second\nid: 7\n\n")
	before := string(raw)
	d, ok := EventData(raw)
	if !ok || string(d) != "first\nsecond" || string(raw) != before {
		t.Fatalf("data = %q, raw = %q", d, raw)
	}
}

func TestObservationKeepsLastUsageAndFirstModel(t *testing.T) {
	var o Observation
	o.Observe([]byte(`{"model":"","choices":[]}`))
	o.Observe([]byte(`{"model":"gemini-2.5-flash","usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`))
	o.Observe([]byte(`{"model":"other","usage":{"prompt_tokens":15,"completion_tokens":8,"total_tokens":41,"prompt_cache_hit_tokens":3}}`))
	want := Usage{Prompt: 15, Completion: 8, Total: 41, Cached: 3}
	if o.Model != "gemini-2.5-flash" || !o.UsageSeen || o.Usage != want {
		t.Fatalf("%+v", o)
	}
}

func TestIsUsageOnly(t *testing.T) {
	if !IsUsageOnly([]byte(`{"choices":[],"usage":{"total_tokens":3}}`)) {
		t.Error("usage chunk not recognised")
	}
	if IsUsageOnly([]byte(`{"choices":[{"delta":{}}],"usage":{"total_tokens":3}}`)) {
		t.Error("finish chunk with usage must reach the client")
	}
	if IsUsageOnly([]byte(`{"choices":[],"usage":null}`)) {
		t.Error("azure's filter-results chunk is not a usage chunk")
	}
}

// Every stream chunk of an OpenAI-family stream is checked, so a chunk
// without usage must cost no allocation.
func TestIsUsageOnlyPlainChunkAllocatesNothing(t *testing.T) {
	chunk := []byte(`{"id":"c","model":"gpt-4-0613","choices":[{"index":0,"delta":{"content":"hi"}}]}`)
	if n := testing.AllocsPerRun(100, func() { IsUsageOnly(chunk) }); n != 0 {
		t.Fatalf("IsUsageOnly allocates %.0f times per plain chunk", n)
	}
}

// Bare CR, LF and CRLF line ends all end lines, however the stream is cut.
func TestEventReaderLineEnds(t *testing.T) {
	in := "data: a\r\rdata: b\r\n\r\ndata: c\n\n: note\r\rdata: d\r\r"
	for name, r := range map[string]io.Reader{
		"whole":    strings.NewReader(in),
		"one byte": iotest.OneByteReader(strings.NewReader(in)),
	} {
		er := NewEventReader(r, 16)
		var got []string
		for {
			raw, err := er.Next()
			if data, ok := EventData(raw); ok {
				got = append(got, string(data))
			}
			if err != nil {
				break
			}
		}
		if strings.Join(got, ",") != "a,b,c,d" {
			t.Errorf("%s: events %q", name, got)
		}
	}
}
