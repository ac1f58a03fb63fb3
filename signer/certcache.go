package signer

import (
	"encoding/json"
	"sync"
)

// BytesCache keeps values decoded from stored bytes, keyed by the bytes
// themselves, so a cached entry can never stand for other bytes. Every
// request still reads its record (a change on any replica, such as a
// revoked token or a disabled CA, applies to the next request); only
// bytes identical to cached ones skip the decoding. Get returns the value
// as cached (a shallow copy for struct types): callers only read it, and
// never modify its slices, maps or pointed-to values. A decode error is
// returned each time, never cached.
type BytesCache[T any] struct {
	decode func([]byte) (T, error)
	mu     sync.RWMutex
	m      map[string]T
}

// bytesCacheMax bounds each cache; past it the cache starts over (the
// values read on every request, tokens and CAs, are few; a tenant has at
// most a few hundred CAs).
const bytesCacheMax = 4096

// NewBytesCache returns an empty cache of the values decode makes.
func NewBytesCache[T any](decode func([]byte) (T, error)) *BytesCache[T] {
	return &BytesCache[T]{decode: decode, m: map[string]T{}}
}

// JSONCache is a BytesCache of JSON documents.
func JSONCache[T any]() *BytesCache[T] {
	return NewBytesCache(func(b []byte) (T, error) {
		var v T
		err := json.Unmarshal(b, &v)
		return v, err
	})
}

// Get returns the value decoded from b.
func (c *BytesCache[T]) Get(b []byte) (T, error) {
	c.mu.RLock()
	v, ok := c.m[string(b)]
	c.mu.RUnlock()
	if ok {
		return v, nil
	}
	v, err := c.decode(b)
	if err != nil {
		return v, err
	}
	c.mu.Lock()
	if len(c.m) >= bytesCacheMax {
		clear(c.m)
	}
	c.m[string(b)] = v
	c.mu.Unlock()
	return v, nil
}
