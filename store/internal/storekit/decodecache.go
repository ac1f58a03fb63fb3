package storekit

import (
	"bytes"
	"maps"
	"slices"
	"sync"

	"github.com/hsmca/hsmca/store"
)

// DecodeCache remembers decoded records by their stored bytes. Every
// request reads its token and the record it acts on; the read itself is
// cheap but decoding the JSON is not. The backend still reads the stored
// bytes on every call, and a cached record is used only when those bytes
// are identical to the ones it was decoded from, so a change made by any
// process (another replica included) shows on the next read. Each call
// gets its own copy, free to change.
type DecodeCache struct {
	mu sync.RWMutex
	m  map[string]decoded
}

type decoded struct {
	raw []byte
	rec *store.Record
}

// decodeCacheMax bounds the entries; past it the cache starts over. The
// records read on every request (tokens, keys, CAs) are few; reads of
// many distinct records (certificates shown at random) only churn it.
const decodeCacheMax = 1024

// decodeCacheMaxRecord is the largest record kept: the cache is for the
// small records read on every request; a large one (a CRL of thousands
// of entries, megabytes) would be held twice over for nothing.
const decodeCacheMaxRecord = 64 << 10

// NewDecodeCache returns an empty cache.
func NewDecodeCache() *DecodeCache { return &DecodeCache{m: map[string]decoded{}} }

// Decode returns the record stored as raw under key, from the cache when
// raw is what it was decoded from, else through decode. raw may be
// memory the caller reuses: the cache keeps a copy.
func (c *DecodeCache) Decode(key string, raw []byte, decode func([]byte) (*store.Record, error)) (*store.Record, error) {
	if len(raw) > decodeCacheMaxRecord {
		return decode(raw)
	}
	c.mu.RLock()
	d, ok := c.m[key]
	c.mu.RUnlock()
	if ok && bytes.Equal(d.raw, raw) {
		return cloneRecord(d.rec), nil
	}
	rec, err := decode(raw)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.m) >= decodeCacheMax {
		clear(c.m)
	}
	c.m[key] = decoded{raw: bytes.Clone(raw), rec: cloneRecord(rec)}
	c.mu.Unlock()
	return rec, nil
}

func cloneRecord(r *store.Record) *store.Record {
	cp := *r
	cp.Unique = slices.Clone(r.Unique)
	cp.Fields = maps.Clone(r.Fields)
	cp.Data = bytes.Clone(r.Data)
	return &cp
}
