package providers

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/tidwall/gjson"
)

// FuzzEventReader: the events of any stream, concatenated, are the stream:
// the relay forwards events byte for byte, so splitting must lose nothing.
func FuzzEventReader(f *testing.F) {
	for _, s := range []string{
		"data: {\"a\":1}\n\ndata: [DONE]\n\n",
		": keep-alive\n\n\r\ndata: x\r\n\r\n",
		"data: a\ndata: b\n\nevent: e\ndata",
		"\n\n\n",
	} {
		f.Add([]byte(s), uint8(16))
	}
	f.Fuzz(func(t *testing.T, stream []byte, size uint8) {
		er := NewEventReader(bytes.NewReader(stream), int(size)+16)
		var got []byte
		for {
			raw, err := er.Next()
			got = append(got, raw...)
			EventData(raw)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		// Events are the stream's bytes; bare CRs become LFs (and a CRLF
		// cut between two reads may become an LF).
		if !bytes.Equal(lineEnds(got), lineEnds(stream)) {
			t.Fatalf("events %q != stream %q", got, stream)
		}
	})
}

func lineEnds(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\r"), []byte("\n"))
}

// FuzzPredictToOpenAI: any predict answer converts to valid JSON or fails
// with an error; it never panics.
func FuzzPredictToOpenAI(f *testing.F) {
	f.Add([]byte(`{"predictions":[{"embeddings":{"values":[0.1,-2],"statistics":{"token_count":2}}}]}`), true)
	f.Add([]byte(`{"predictions":[{"embeddings":{"values":["x"]}}]}`), false)
	f.Add([]byte(`{"predictions":{}}`), false)
	f.Fuzz(func(t *testing.T, answer []byte, b64 bool) {
		out, err := predictToOpenAI([][]byte{answer}, 1, "m", b64)
		if err == nil && !gjson.ValidBytes(out) {
			t.Fatalf("invalid JSON %q from %q", out, answer)
		}
	})
}
