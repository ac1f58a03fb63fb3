package signer

import (
	"context"
	"encoding/json"
)

// StoredEvent is an event record with its place in the chain.
type StoredEvent struct {
	Seq uint64 `json:"seq"`
	EventRecord
	PrevHash string `json:"prevHash"`
	Hash     string `json:"hash"`
}

// ListEvents returns a tenant's events after a sequence number, oldest first.
func (e *Engine) ListEvents(ctx context.Context, tenant string, after uint64, limit int) ([]StoredEvent, error) {
	evs, err := e.store.ListEvents(ctx, tenant, after, limit)
	if err != nil {
		return nil, storeErr(err, "event")
	}
	out := make([]StoredEvent, 0, len(evs))
	for _, ev := range evs {
		se := StoredEvent{Seq: ev.Seq, PrevHash: ev.PrevHash, Hash: ev.Hash}
		if err := json.Unmarshal(ev.Data, &se.EventRecord); err != nil {
			return nil, storeErr(err, "event")
		}
		out = append(out, se)
	}
	return out, nil
}
