package signer

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"sync"
)

// bytesCache keeps values decoded from stored bytes, keyed by the bytes
// themselves, so a cached entry can never stand for other bytes. Every
// request still reads its record (a change on any replica, such as a
// revoked token or a disabled CA, applies to the next request); only
// bytes identical to cached ones skip the decoding. get returns the value
// as cached (a shallow copy for struct types): callers only read it, and
// never modify its slices, maps or pointed-to values. A decode error is
// returned each time, never cached.
type bytesCache[T any] struct {
	decode func([]byte) (T, error)
	mu     sync.RWMutex
	m      map[string]T
}

// bytesCacheMax bounds each cache; past it the cache starts over (the
// values read on every request, tokens and CAs, are few; a tenant has at
// most a few hundred CAs).
const bytesCacheMax = 4096

func newBytesCache[T any](decode func([]byte) (T, error)) *bytesCache[T] {
	return &bytesCache[T]{decode: decode, m: map[string]T{}}
}

// jsonCache is a bytesCache of JSON documents.
func jsonCache[T any]() *bytesCache[T] {
	return newBytesCache(func(b []byte) (T, error) {
		var v T
		err := json.Unmarshal(b, &v)
		return v, err
	})
}

func (c *bytesCache[T]) get(b []byte) (T, error) {
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

// issuerCerts keeps parsed CA certificates by their DER bytes: every
// issuance reads its CA record afresh but need not parse the same
// certificate again each time.
var issuerCerts = newBytesCache(parseCACert)

func parseCACert(der []byte) (*x509.Certificate, error) {
	if len(der) == 0 {
		return nil, errors.New("CA has no certificate")
	}
	return x509.ParseCertificate(der)
}
