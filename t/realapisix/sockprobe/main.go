// Command sockprobe plays a local process that is not APISIX: it connects
// to APISIX's ext-plugin socket, asks for a conf token as APISIX would, and
// prints "token" if it got one, else "refused".
package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/api7/ext-plugin-proto/go/A6"
	pc "github.com/api7/ext-plugin-proto/go/A6/PrepareConf"
	flatbuffers "github.com/google/flatbuffers/go"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: sockprobe <socket>")
		os.Exit(2)
	}
	c, err := net.DialTimeout("unix", os.Args[1], 2*time.Second)
	if err != nil {
		fmt.Println("refused:", err)
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	b := flatbuffers.NewBuilder(256)
	name, value := b.CreateString("ai-proxy"), b.CreateString(`{"provider":"openai","auth":{"header":{"Authorization":"Bearer x"}}}`)
	A6.TextEntryStart(b)
	A6.TextEntryAddName(b, name)
	A6.TextEntryAddValue(b, value)
	entry := A6.TextEntryEnd(b)
	pc.ReqStartConfVector(b, 1)
	b.PrependUOffsetT(entry)
	confs := b.EndVector(1)
	key := b.CreateString("route#probe#ext-plugin-pre-req#1")
	pc.ReqStart(b)
	pc.ReqAddConf(b, confs)
	pc.ReqAddKey(b, key)
	b.Finish(pc.ReqEnd(b))
	payload := b.FinishedBytes()
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(payload)))
	hdr[0] = 1 // RPC_PREPARE_CONF
	if _, err := c.Write(append(hdr[:], payload...)); err != nil {
		fmt.Println("refused:", err)
		return
	}
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		fmt.Println("refused:", err)
		return
	}
	fmt.Println("token")
}
