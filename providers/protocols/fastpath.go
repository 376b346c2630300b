package protocols

import (
	"strings"
	"unsafe"

	"github.com/tidwall/gjson"
)

// Most events of a stream carry one text fragment and nothing else. The
// decoders read those with gjson over the event's bytes, without decoding
// the whole event (encoding/json costs about a dozen allocations per
// event), and fall back to the full decoding for anything else.

// bytesView reads b as a string without copying it; b must not change while
// the string is used. A Delta's Text may point into the event: an encoder
// consumes it before the next event is read.
func bytesView(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// hasAnyKey reports whether s names one of keys as a JSON key or string:
// a quote inside a JSON string is escaped, so `"usage"` with bare quotes
// cannot be part of a text fragment.
func hasAnyKey(s string, keys ...string) bool {
	for _, k := range keys {
		if strings.Contains(s, k) {
			return true
		}
	}
	return false
}

// chatTextChunk reads a chat.completion.chunk that carries at most a text
// fragment of choice 0; ok is false for any other chunk.
func (d *chatDecoder) chatTextChunk(ds []Delta, data []byte) (out []Delta, ok bool) {
	s := bytesView(data)
	if hasAnyKey(s, `"tool_calls"`, `"function_call"`, `"usage"`, `"error"`, `"reasoning`, `"refusal"`) {
		return ds, false
	}
	root := gjson.Parse(s)
	choices := root.Get("choices")
	if !root.IsObject() || !choices.IsArray() || choices.Get("#").Int() > 1 {
		return ds, false
	}
	var d0 Delta
	if c := choices.Get("0"); c.Exists() {
		if c.Get("index").Int() != 0 {
			return ds, false
		}
		if f := c.Get("finish_reason"); f.Type != gjson.Null && f.Exists() {
			return ds, false
		}
		text := c.Get("delta.content")
		if text.Type != gjson.String && text.Exists() && text.Type != gjson.Null {
			return ds, false
		}
		d0.Text = text.Str
	}
	if !d.idSent {
		if id := root.Get("id").Str; id != "" {
			d0.ID, d.idSent = strings.Clone(id), true
		}
	}
	if !d.modelSent {
		if m := root.Get("model").Str; m != "" {
			d0.Model, d.modelSent = strings.Clone(m), true
		}
	}
	if d0 != (Delta{}) {
		ds = append(ds, d0)
	}
	return ds, true
}

// anthTextDelta reads a content_block_delta event whose delta is text.
func anthTextDelta(ds []Delta, data []byte) (out []Delta, ok bool) {
	s := bytesView(data)
	root := gjson.Parse(s)
	delta := root.Get("delta")
	if !root.IsObject() || delta.Get("type").Str != "text_delta" {
		return ds, false
	}
	text := delta.Get("text")
	if text.Type != gjson.String {
		return ds, false
	}
	if text.Str != "" {
		ds = append(ds, Delta{Text: text.Str})
	}
	return ds, true
}
