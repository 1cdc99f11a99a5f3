package cluster

import (
	"bytes"
	"encoding/json"
	"maps"
	"reflect"
	"strings"
	"sync"
)

// Records written by a later release may carry fields this one does not know. A node
// that rewrites such a record (a move's commit, a size update) keeps them as they were:
// the records that embed Unknown remember, when read, the fields their type does not
// declare, and write them back beside their own. So nodes of two releases share one
// store during a rolling upgrade without the older erasing what the newer wrote.

// Unknown holds a record's fields that this release does not know.
type Unknown struct {
	fields map[string]json.RawMessage
}

func (u Unknown) unknownFields() map[string]json.RawMessage { return u.fields }

func (u *Unknown) setUnknownFields(f map[string]json.RawMessage) { u.fields = f }

type (
	unknownReader interface {
		unknownFields() map[string]json.RawMessage
	}
	unknownWriter interface {
		setUnknownFields(map[string]json.RawMessage)
	}
)

// decodeKnown decodes b into v if b has no field v's type does not declare (and fails
// otherwise): one pass, where keepUnknown needs a second.
func decodeKnown(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

// keepUnknown records in v the fields of b that v's type does not declare.
func keepUnknown(b []byte, v any) {
	w, ok := v.(unknownWriter)
	if !ok {
		return
	}
	var all map[string]json.RawMessage
	if json.Unmarshal(b, &all) != nil {
		return
	}
	known := jsonFields(reflect.TypeOf(v).Elem())
	maps.DeleteFunc(all, func(k string, _ json.RawMessage) bool { return known[k] })
	if len(all) > 0 {
		w.setUnknownFields(all)
	}
}

// withUnknown adds to b, v's encoding, the unknown fields v keeps that b lacks.
func withUnknown(b []byte, v any) []byte {
	r, ok := v.(unknownReader)
	if !ok || len(r.unknownFields()) == 0 {
		return b
	}
	var all map[string]json.RawMessage
	if json.Unmarshal(b, &all) != nil {
		return b
	}
	for k, raw := range r.unknownFields() {
		if _, ok := all[k]; !ok {
			all[k] = raw
		}
	}
	out, err := json.Marshal(all)
	if err != nil {
		return b
	}
	return out
}

var fieldsByType sync.Map // reflect.Type -> map[string]bool

// jsonFields is the set of JSON names t's fields encode under.
func jsonFields(t reflect.Type) map[string]bool {
	if f, ok := fieldsByType.Load(t); ok {
		return f.(map[string]bool)
	}
	f := map[string]bool{}
	for i := range t.NumField() {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		switch {
		case name == "-" || !sf.IsExported():
			continue
		case name == "" && sf.Anonymous && sf.Type.Kind() == reflect.Struct:
			maps.Copy(f, jsonFields(sf.Type))
		case name == "":
			f[sf.Name] = true
		default:
			f[name] = true
		}
	}
	fieldsByType.Store(t, f)
	return f
}
