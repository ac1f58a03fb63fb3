package boltstore

import (
	"sync"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"

	"github.com/hsmca/hsmca/store"
)

// One process holds the bolt file, and every write to it is a bbolt
// write transaction of this store: a record read when no write was under
// way is still what the file holds for as long as no write has begun
// since. writeGen tells that, and guardMemo keeps the versions of the
// records guards were last checked against with the writeGen of their
// read, so that a guard on a record nothing has written since (a known
// API token's, a signing key's while its signatures' events go to the
// journal) holds without a read transaction.

// writeGen counts the store's bbolt write transactions: its high 32 bits
// change at each one's beginning and end, its low 32 bits count those
// under way.
type writeGen struct{ v atomic.Uint64 }

// begin is called before a write transaction begins, end once it has
// committed or rolled back.
func (w *writeGen) begin() { w.v.Add(1<<32 | 1) }
func (w *writeGen) end()   { w.v.Add(1<<32 - 1) }

// load is the current count and whether no write is under way.
func (w *writeGen) load() (uint64, bool) {
	v := w.v.Load()
	return v, uint32(v) == 0
}

// update runs fn in a bbolt write transaction counted by w.
func (w *writeGen) update(db *bolt.DB, fn func(*bolt.Tx) error) error {
	w.begin()
	defer w.end()
	return db.Update(fn)
}

type memoKey struct{ tenant, kind, id string }

type memoEntry struct{ gen, version uint64 }

// guardMemoMax bounds the memo: past it, it starts again empty.
const guardMemoMax = 4096

type guardMemo struct {
	mu sync.RWMutex
	m  map[memoKey]memoEntry
}

// holds reports whether k was read at version when the write count was
// gen.
func (m *guardMemo) holds(k memoKey, gen, version uint64) bool {
	m.mu.RLock()
	e, ok := m.m[k]
	m.mu.RUnlock()
	return ok && e.gen == gen && e.version == version
}

func (m *guardMemo) put(k memoKey, gen, version uint64) {
	m.mu.Lock()
	if m.m == nil || len(m.m) >= guardMemoMax {
		m.m = make(map[memoKey]memoEntry)
	}
	m.m[k] = memoEntry{gen, version}
	m.mu.Unlock()
}

// reader opens one read transaction when a check first needs it; gen and
// quiet are the write count from before it.
type reader struct {
	db    *bolt.DB
	tx    *bolt.Tx
	gen   uint64
	quiet bool
}

func newReader(db *bolt.DB, w *writeGen) *reader {
	r := &reader{db: db}
	r.gen, r.quiet = w.load()
	return r
}

func (r *reader) get() (*bolt.Tx, error) {
	if r.tx == nil {
		tx, err := r.db.Begin(false)
		if err != nil {
			return nil, err
		}
		r.tx = tx
	}
	return r.tx, nil
}

func (r *reader) close() {
	if r.tx != nil {
		_ = r.tx.Rollback()
		r.tx = nil
	}
}

// guardHeld checks one guard (no And) as guardHolds does, from the memo
// when the record was read since the last write, else in r's transaction.
func (s *Store) guardHeld(r *reader, tenant string, g *store.Guard) (bool, error) {
	k := memoKey{tenant, g.Kind, g.ID}
	if r.quiet && s.memo.holds(k, r.gen, g.Version) {
		return true, nil
	}
	tx, err := r.get()
	if err != nil {
		return false, err
	}
	v, found, err := s.versionOf(tx, tenant, g.Kind, g.ID)
	if err != nil || !found {
		return false, err
	}
	if r.quiet {
		s.memo.put(k, r.gen, v)
	}
	return v == g.Version, nil
}
