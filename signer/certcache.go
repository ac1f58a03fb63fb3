package signer

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"sync"
)

// certCache keeps parsed CA certificates by their DER bytes. Every
// issuance reads its CA record afresh (so a CA disabled on another replica
// is refused on the next request) but need not parse the same certificate
// again each time: the key is the certificate itself, so a cached entry
// can never stand for other bytes. Callers only read the parsed value.
type certCache struct {
	mu sync.RWMutex
	m  map[string]*x509.Certificate
}

// certCacheMax bounds the cache; past it the cache starts over (CA
// certificates change rarely, and a tenant has at most a few hundred).
const certCacheMax = 1024

var issuerCerts = &certCache{m: map[string]*x509.Certificate{}}

func (c *certCache) parse(der []byte) (*x509.Certificate, error) {
	if len(der) == 0 {
		return nil, errors.New("CA has no certificate")
	}
	c.mu.RLock()
	cert := c.m[string(der)]
	c.mu.RUnlock()
	if cert != nil {
		return cert, nil
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.m) >= certCacheMax {
		clear(c.m)
	}
	c.m[string(der)] = cert
	c.mu.Unlock()
	return cert, nil
}

// decodedCache keeps decoded JSON records by their stored bytes, the same
// way: every request still reads the record (so a change on any replica,
// such as a revoked token or a disabled CA, applies to the next request),
// and only bytes identical to the cached ones reuse the decoded value.
// decode returns a shallow copy: callers must not modify its slices, maps
// or pointed-to values.
type decodedCache[T any] struct {
	mu sync.RWMutex
	m  map[string]*T // stored record bytes -> decoded value
}

// decodedCacheMax bounds each cache; past it the cache starts over.
const decodedCacheMax = 4096

func (c *decodedCache[T]) decode(data []byte) (T, error) {
	c.mu.RLock()
	v := c.m[string(data)]
	c.mu.RUnlock()
	if v != nil {
		return *v, nil
	}
	var out T
	if err := json.Unmarshal(data, &out); err != nil {
		return out, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= decodedCacheMax {
		c.m = map[string]*T{}
	}
	c.m[string(data)] = &out
	c.mu.Unlock()
	return out, nil
}
