// Vector generator, not a real test: copied into a private copy of the Debian
// serf 0.9.4 package by make_go_vectors.py, it writes Serf's own encodings of
// every message type as hex to $VECTORS_OUT.
package serf

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/codec"
)

func TestGenSerfVectors(t *testing.T) {
	v := map[string]string{}
	put := func(name string, typ messageType, msg interface{}) {
		b, err := encodeMessage(typ, msg)
		if err != nil {
			t.Fatal(err)
		}
		v[name] = hex.EncodeToString(b)
	}
	filter := func(ft filterType, f interface{}) []byte {
		b, err := encodeFilter(ft, f)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	put("join", messageJoinType, &messageJoin{LTime: 3, Node: "goB"})
	put("leave", messageLeaveType, &messageLeave{LTime: 9, Node: "n1", Prune: true})
	put("user_event", messageUserEventType, &messageUserEvent{LTime: 1, Name: "deploy",
		Payload: []byte("v42"), CC: true})
	put("user_event_nil", messageUserEventType, &messageUserEvent{LTime: 1 << 40, Name: "x"})
	put("query", messageQueryType, &messageQuery{LTime: 5, ID: 0x04cb0e0b,
		Addr: []byte{127, 0, 0, 1}, Port: 7946, SourceNode: "goA", Flags: queryFlagAck,
		Timeout: 3 * time.Second, Name: "ping", Payload: []byte("hi")})
	put("query_filters", messageQueryType, &messageQuery{LTime: 6, ID: 1,
		Addr: net.ParseIP("fd00::2"), Port: 7946, SourceNode: "goA",
		Filters: [][]byte{filter(filterNodeType, filterNode{"a", "b"}),
			filter(filterTagType, filterTag{Tag: "role", Expr: "^web$"})},
		Flags: queryFlagAck | queryFlagNoBroadcast, RelayFactor: 2,
		Timeout: 15 * time.Second, Name: "uptime"})
	resp := messageQueryResponse{LTime: 5, ID: 77, From: "goA", Flags: queryFlagAck}
	put("query_response_ack", messageQueryResponseType, &resp)
	put("query_response", messageQueryResponseType, &messageQueryResponse{LTime: 5, ID: 77,
		From: "goA", Payload: []byte("up 3 days")})

	events := make([]*userEvents, 512)
	events[2] = &userEvents{LTime: 2, Events: []userEvent{{Name: "deploy", Payload: []byte("v1")},
		{Name: "restart"}}}
	events[511] = &userEvents{LTime: 511, Events: []userEvent{{Name: "x", Payload: []byte{0}}}}
	put("push_pull", messagePushPullType, &messagePushPull{LTime: 10,
		StatusLTimes: map[string]LamportTime{"a": 3}, LeftMembers: []string{"b"},
		EventLTime: 4, Events: events, QueryLTime: 7})
	put("push_pull_fresh", messagePushPullType, &messagePushPull{LTime: 1,
		StatusLTimes: map[string]LamportTime{}, LeftMembers: make([]string, 0),
		EventLTime: 1, Events: make([]*userEvents, 512), QueryLTime: 1})

	put("conflict_member", messageConflictResponseType, &Member{Name: "n",
		Addr: net.IPv4(10, 0, 0, 1).To4(), Port: 7946, Tags: map[string]string{"role": "web"},
		Status: StatusAlive, ProtocolMin: 1, ProtocolMax: 5, ProtocolCur: 2,
		DelegateMin: 2, DelegateMax: 5, DelegateCur: 5})
	put("conflict_nil", messageConflictResponseType, (*Member)(nil))
	put("key_request", messageKeyRequestType, &keyRequest{Key: bytes.Repeat([]byte{7}, 32)})
	put("key_request_list", messageKeyRequestType, &keyRequest{})
	put("key_response", messageKeyResponseType, &nodeKeyResponse{Result: true,
		Keys: []string{"k1", "k2"}, PrimaryKey: "k1"})
	put("key_response_err", messageKeyResponseType, &nodeKeyResponse{
		Message: "No keyring to modify (encryption not enabled)"})

	relay, err := encodeRelayMessage(messageQueryResponseType,
		net.UDPAddr{IP: net.IPv4(127, 0, 0, 1).To4(), Port: 7946}, "goA", &resp)
	if err != nil {
		t.Fatal(err)
	}
	v["relay"] = hex.EncodeToString(relay)

	var tags bytes.Buffer
	tags.WriteByte(tagMagicByte)
	if err := codec.NewEncoder(&tags, &codec.MsgpackHandle{}).Encode(
		map[string]string{"role": "web"}); err != nil {
		t.Fatal(err)
	}
	v["tags_role_web"] = hex.EncodeToString(tags.Bytes())
	tags.Reset()
	tags.WriteByte(tagMagicByte)
	if err := codec.NewEncoder(&tags, &codec.MsgpackHandle{}).Encode(
		map[string]string{}); err != nil {
		t.Fatal(err)
	}
	v["tags_empty"] = hex.EncodeToString(tags.Bytes())

	data, err := json.MarshalIndent(map[string]interface{}{"messages": v}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(os.Getenv("VECTORS_OUT"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}
