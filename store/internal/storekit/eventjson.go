package storekit

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/hsmca/hsmca/store"
)

// MarshalEvent is json.Marshal(ev), byte for byte, written without
// reflection: every stored event is encoded once per append. Its data is
// appended as it is when already in normal form (NormalizeEvents made it
// so); anything else (data that is not, a time json.Marshal refuses) goes
// through encoding/json, which decides.
func MarshalEvent(ev *store.Event) ([]byte, error) {
	if !normalForm(ev.Data) || ev.Time.Year() < 0 || ev.Time.Year() > 9999 {
		return json.Marshal(ev)
	}
	b := make([]byte, 0, 160+len(ev.Tenant)+len(ev.Data))
	b = append(b, `{"tenant":`...)
	b = store.AppendJSONString(b, ev.Tenant)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, ev.Seq, 10)
	b = append(b, `,"time":"`...)
	b = ev.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","prevHash":`...)
	b = store.AppendJSONString(b, ev.PrevHash)
	b = append(b, `,"hash":`...)
	b = store.AppendJSONString(b, ev.Hash)
	b = append(b, `,"data":`...)
	b = append(b, ev.Data...)
	return append(b, '}'), nil
}
