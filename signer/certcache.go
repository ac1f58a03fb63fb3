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

// tokenCache keeps decoded API tokens by their stored bytes, the same
// way: every request still reads the token record (so a revocation or an
// expiry change on any replica applies to the next request), and only
// bytes identical to the cached ones reuse the decoded token. Callers get
// a copy whose slices and times they must not modify.
type tokenCache struct {
	mu sync.RWMutex
	m  map[string]*Token // stored record bytes -> decoded token
}

const tokenCacheMax = 4096

func (c *tokenCache) decode(data []byte) (Token, error) {
	c.mu.RLock()
	t := c.m[string(data)]
	c.mu.RUnlock()
	if t != nil {
		return *t, nil
	}
	var tok Token
	if err := json.Unmarshal(data, &tok); err != nil {
		return Token{}, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= tokenCacheMax {
		c.m = map[string]*Token{}
	}
	c.m[string(data)] = &tok
	c.mu.Unlock()
	return tok, nil
}
