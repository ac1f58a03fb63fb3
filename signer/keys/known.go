package keys

import "sync"

// knownKey is what a signature needs of a key's record, kept from the
// last full read (Sign): the owner record's kind and version, the HSM
// object it names and its algorithm.
type knownKey struct {
	kind      string
	version   uint64
	hsmKey    string
	algorithm string
}

// knownKeys holds the keys signed with lately, by tenant and id. It is a
// hint only: every use is checked against the stored record's version
// when the signature's event is appended. Bounded: when full it starts
// again empty.
type knownKeys struct {
	mu sync.RWMutex
	m  map[string]knownKey
}

const knownKeysMax = 16384

func knownID(tenant, id string) string { return tenant + "\x00" + id }

func (c *knownKeys) get(tenant, id string) (knownKey, bool) {
	c.mu.RLock()
	k, ok := c.m[knownID(tenant, id)]
	c.mu.RUnlock()
	return k, ok
}

func (c *knownKeys) put(tenant, id string, k knownKey) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= knownKeysMax {
		c.m = make(map[string]knownKey)
	}
	c.m[knownID(tenant, id)] = k
	c.mu.Unlock()
}

func (c *knownKeys) forget(tenant, id string) {
	c.mu.Lock()
	delete(c.m, knownID(tenant, id))
	c.mu.Unlock()
}
