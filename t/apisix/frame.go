// Package apisix is a test double of Apache APISIX's side of the
// ext-plugin protocol (../shared/apisix-ext-plugin-protocol.md): it starts
// the runner like APISIX, speaks the flatbuffers RPC over a unix socket,
// matches routes, applies the runner's Stop/Rewrite and proxies to the
// route's upstream the way nginx does.
package apisix

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// RPC types (apisix/constants.lua).
const (
	rpcError       = 0
	rpcPrepareConf = 1
	rpcHTTPReqCall = 2
	rpcExtraInfo   = 3
)

// maxPayload is what a 24-bit length can say (§2).
const maxPayload = 1<<24 - 1

var (
	errHeaderShort   = errors.New("header too short")
	errDataTruncated = errors.New("data truncated")
)

// writeFrame sends one frame: type byte, 24-bit big-endian length, payload.
func writeFrame(w io.Writer, ty byte, payload []byte) error {
	if len(payload) > maxPayload {
		return fmt.Errorf("the max length of data is %d but got %d", maxPayload, len(payload))
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(payload)))
	hdr[0] = ty
	if _, err := w.Write(append(hdr[:], payload...)); err != nil {
		return err
	}
	return nil
}

// readFrame reads exactly one frame, only 24 bits of length (§2).
func readFrame(r io.Reader) (byte, []byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, errHeaderShort
		}
		return 0, nil, err
	}
	ty := hdr[0]
	n := int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3])
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, errDataTruncated
	}
	return ty, buf, nil
}
