package signer

import "sync"

// Known keeps what operations read of records lately, by tenant and id,
// so that the next operation on the same record need not read it again
// before acting. It is a hint only: every use is checked against the
// record's version in the write the operation ends with (store.Guard,
// Op.DoneIf), and a failed check means forgetting the entry and doing
// the work again on a fresh read. Bounded: when full it starts again
// empty. The zero value is ready.
type Known[T any] struct {
	mu sync.RWMutex
	m  map[string]T
}

// knownMax bounds a Known.
const knownMax = 16384

func knownID(tenant, id string) string { return tenant + "\x00" + id }

// Get returns the entry of a record, if any.
func (c *Known[T]) Get(tenant, id string) (T, bool) {
	c.mu.RLock()
	v, ok := c.m[knownID(tenant, id)]
	c.mu.RUnlock()
	return v, ok
}

// Put keeps the entry of a record.
func (c *Known[T]) Put(tenant, id string, v T) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= knownMax {
		c.m = make(map[string]T)
	}
	c.m[knownID(tenant, id)] = v
	c.mu.Unlock()
}

// Forget drops the entry of a record.
func (c *Known[T]) Forget(tenant, id string) {
	c.mu.Lock()
	delete(c.m, knownID(tenant, id))
	c.mu.Unlock()
}
