// Vector generator, not a real test: copied into a private copy of the Debian
// memberlist 0.2.2 package by make_go_vectors.py, it writes memberlist's own
// encodings (and AES-GCM payloads) as hex to $VECTORS_OUT, and checks that
// memberlist decrypts the Python-sealed samples listed in $PY_SEALED.
package memberlist

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"testing"

	"github.com/hashicorp/go-msgpack/codec"
)

func mustEncode(t *testing.T, typ messageType, in interface{}) []byte {
	buf, err := encode(typ, in)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// streamOf concatenates msgpack objects after a type byte, as sendLocalState does.
func streamOf(t *testing.T, typ messageType, objs ...interface{}) []byte {
	var buf bytes.Buffer
	buf.WriteByte(byte(typ))
	enc := codec.NewEncoder(&buf, &codec.MsgpackHandle{})
	for _, o := range objs {
		if err := enc.Encode(o); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func key(n int) []byte {
	k := make([]byte, n)
	for i := range k {
		k[i] = byte(i*7 + n)
	}
	return k
}

type sealed struct {
	Version   int    `json:"version"`
	Key       string `json:"key"`
	AAD       string `json:"aad"`
	Plaintext string `json:"plaintext"`
	Sealed    string `json:"sealed"`
}

func TestGenMemberlistVectors(t *testing.T) {
	out := map[string]interface{}{}
	v := map[string]string{}
	put := func(name string, b []byte) { v[name] = hex.EncodeToString(b) }

	vsn := []uint8{1, 5, 2, 2, 5, 5}
	meta := append([]byte{0xff}, []byte("\x82\xa4role\xa3web\xa2dc\xa1x")...)
	put("ping_full", mustEncode(t, pingMsg, &ping{SeqNo: 7, Node: "goA",
		SourceAddr: []byte{127, 0, 0, 1}, SourcePort: 7950, SourceNode: "py1"}))
	put("ping_min", mustEncode(t, pingMsg, &ping{SeqNo: 1, Node: "n"}))
	put("indirect", mustEncode(t, indirectPingMsg, &indirectPingReq{SeqNo: 300,
		Target: []byte{10, 0, 0, 7}, Port: 7946, Node: "b", Nack: true,
		SourceAddr: net.ParseIP("fd00::2"), SourcePort: 7946, SourceNode: "a"}))
	put("ack_nil", mustEncode(t, ackRespMsg, &ackResp{SeqNo: 70000}))
	put("ack_payload", mustEncode(t, ackRespMsg, &ackResp{SeqNo: 5, Payload: []byte("\x01coord")}))
	put("nack", mustEncode(t, nackRespMsg, &nackResp{SeqNo: 4294967295}))
	put("err", mustEncode(t, errMsg, &errResp{Error: "boom"}))
	put("suspect", mustEncode(t, suspectMsg, &suspect{Incarnation: 3, Node: "x", From: "y"}))
	put("dead_leave", mustEncode(t, deadMsg, &dead{Incarnation: 7, Node: "x", From: "x"}))
	alive1 := mustEncode(t, aliveMsg, &alive{Incarnation: 1, Node: "goA",
		Addr: []byte{127, 0, 0, 1}, Port: 7946, Meta: meta, Vsn: vsn})
	put("alive_go", alive1)
	put("alive_v4mapped", mustEncode(t, aliveMsg, &alive{Incarnation: 2, Node: "n",
		Addr: net.ParseIP("10.1.2.3"), Port: 1, Vsn: vsn}))
	put("alive_v6_long", mustEncode(t, aliveMsg, &alive{Incarnation: 4294967295,
		Node: "a-node-name-that-is-longer-than-thirty-one-bytes",
		Addr: net.ParseIP("2001:db8::1"), Port: 65535,
		Meta: bytes.Repeat([]byte{0xab}, 300), Vsn: vsn}))
	ping1 := mustEncode(t, pingMsg, &ping{SeqNo: 1, Node: "n"})
	susp := mustEncode(t, suspectMsg, &suspect{Incarnation: 3, Node: "x", From: "y"})
	put("compound", makeCompoundMessage([][]byte{ping1, susp}).Bytes())
	comp, err := compressPayload(alive1)
	if err != nil {
		t.Fatal(err)
	}
	put("compress_alive", comp.Bytes())
	user := []byte{2, 0x80}
	put("push_pull", append(streamOf(t, pushPullMsg,
		&pushPullHeader{Nodes: 2, UserStateLen: len(user), Join: true},
		&pushNodeState{Name: "a", Addr: []byte{127, 0, 0, 1}, Port: 7946, Meta: meta,
			Incarnation: 1, State: StateAlive, Vsn: vsn},
		&pushNodeState{Name: "b", Addr: []byte{127, 0, 0, 2}, Port: 7947,
			Incarnation: 9, State: StateLeft, Vsn: vsn}), user...))
	put("user_stream", append(streamOf(t, userMsg, &userMsgHeader{UserMsgLen: 3}), []byte("abc")...))
	out["messages"] = v

	// Go-sealed payloads: UDP (no AAD) and stream (AAD = 0a | L).
	var goSealed []sealed
	plain := []byte("\x04some memberlist message")
	for _, n := range []int{16, 24, 32} {
		for _, ver := range []encryptionVersion{0, 1} {
			var buf bytes.Buffer
			if err := encryptPayload(ver, key(n), plain, nil, &buf); err != nil {
				t.Fatal(err)
			}
			goSealed = append(goSealed, sealed{int(ver), base64.StdEncoding.EncodeToString(key(n)),
				"", hex.EncodeToString(plain), hex.EncodeToString(buf.Bytes())})

			var frame bytes.Buffer
			frame.WriteByte(byte(encryptMsg))
			l := encryptedLength(ver, len(plain))
			frame.Write([]byte{byte(l >> 24), byte(l >> 16), byte(l >> 8), byte(l)})
			aad := append([]byte(nil), frame.Bytes()...)
			if err := encryptPayload(ver, key(n), plain, aad, &frame); err != nil {
				t.Fatal(err)
			}
			goSealed = append(goSealed, sealed{int(ver), base64.StdEncoding.EncodeToString(key(n)),
				hex.EncodeToString(aad), hex.EncodeToString(plain),
				hex.EncodeToString(frame.Bytes()[5:])})
		}
	}
	out["go_sealed"] = goSealed

	// Python-sealed payloads that memberlist must open.
	if path := os.Getenv("PY_SEALED"); path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var samples []sealed
		if err := json.Unmarshal(raw, &samples); err != nil {
			t.Fatal(err)
		}
		for _, s := range samples {
			k, _ := base64.StdEncoding.DecodeString(s.Key)
			aad, _ := hex.DecodeString(s.AAD)
			msg, _ := hex.DecodeString(s.Sealed)
			want, _ := hex.DecodeString(s.Plaintext)
			if len(aad) == 0 {
				aad = nil
			}
			got, err := decryptPayload([][]byte{key(7 + 9), k}, msg, aad)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("memberlist could not open a Python-sealed payload: %v", err)
			}
		}
		out["py_sealed_opened_by_go"] = samples
	}

	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(os.Getenv("VECTORS_OUT"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}
