package peers

import (
	"encoding"
	"encoding/json"
)

// Codec encodes the messages of every call between nodes: as JSON, or in a message's own
// binary encoding if it has one (encoding.BinaryMarshaler and BinaryUnmarshaler; the
// transfer engine's manifest and wanted list, which grow with a volume, do).
//
// Servers made by NewServer and connections made by Dial use it for every call, whatever
// codecs gRPC has registered; a server or client made another way must name it too
// (grpc.ForceServerCodec, grpc.ForceCodec). Its name, "json", travels as each call's
// content-subtype (application/grpc+json), as it did when nodes registered this codec
// with gRPC under that name: nodes of older and newer versions understand each other.
type Codec struct{}

// Name is the content-subtype of calls between nodes. Never change it: older nodes find
// their codec by it.
func (Codec) Name() string { return "json" }

// Marshal encodes v.
func (Codec) Marshal(v any) ([]byte, error) {
	if m, ok := v.(encoding.BinaryMarshaler); ok {
		return m.MarshalBinary()
	}
	return json.Marshal(v)
}

// Unmarshal decodes b into v.
func (Codec) Unmarshal(b []byte, v any) error {
	if m, ok := v.(encoding.BinaryUnmarshaler); ok {
		return m.UnmarshalBinary(b)
	}
	return json.Unmarshal(b, v)
}
