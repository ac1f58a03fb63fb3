package boltstore

import (
	"slices"
	"sync"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"

	"github.com/hsmca/hsmca/store"
)

// One process holds the bolt file, and every change to a record is a
// Put or Delete in a bbolt write transaction of this store: a record read
// when no write of its kind was under way is still what the file holds
// for as long as no write of its kind has begun since. writeGens keep
// that count per kind, and guardMemo the versions of the records guards
// were last checked against with their kind's count at the read, so that
// a guard on a record nothing has written since (a known API token's, a
// signing key's) holds without a read transaction, whatever else is
// written meanwhile (certificates, events).

// writeGen counts the write transactions that change records of one
// kind: its high 32 bits change at each one's beginning and end, its low
// 32 bits count those under way.
type writeGen struct{ v atomic.Uint64 }

// begin is called before a record of the kind changes in a write
// transaction, end once that transaction has committed or rolled back.
func (w *writeGen) begin() { w.v.Add(1<<32 | 1) }
func (w *writeGen) end()   { w.v.Add(1<<32 - 1) }

// load is the current count and whether no write is under way.
func (w *writeGen) load() (uint64, bool) {
	v := w.v.Load()
	return v, uint32(v) == 0
}

// writeGens are the store's write counts by record kind.
type writeGens struct {
	mu sync.RWMutex
	m  map[string]*writeGen
	// touching: the counts begun by the write transaction under way
	// (bbolt runs one at a time; only it reads or changes this).
	touching []*writeGen
}

func (w *writeGens) of(kind string) *writeGen {
	w.mu.RLock()
	g := w.m[kind]
	w.mu.RUnlock()
	if g != nil {
		return g
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if g = w.m[kind]; g == nil {
		if w.m == nil {
			w.m = map[string]*writeGen{}
		}
		g = &writeGen{}
		w.m[kind] = g
	}
	return g
}

// touch is called in a write transaction (update) before a record of
// kind is put or deleted.
func (w *writeGens) touch(kind string) {
	g := w.of(kind)
	if !slices.Contains(w.touching, g) {
		g.begin()
		w.touching = append(w.touching, g)
	}
}

// update runs fn in a bbolt write transaction and ends the counts it
// began once the transaction has committed or rolled back. Every write
// transaction that may change a record goes through it.
func (w *writeGens) update(db *bolt.DB, fn func(*bolt.Tx) error) error {
	var touched []*writeGen
	defer func() {
		for _, g := range touched {
			g.end()
		}
	}()
	return db.Update(func(tx *bolt.Tx) error {
		defer func() { touched, w.touching = w.touching, nil }()
		return fn(tx)
	})
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

// reader opens one read transaction when a check first needs it.
type reader struct {
	db *bolt.DB
	tx *bolt.Tx
	// checkpoints, when set, counts the journal's checkpoints; since is
	// its count before tx began.
	checkpoints *atomic.Uint64
	since       uint64
}

// stale reports whether a checkpoint of the journal began after r's
// transaction: a record the journal held then may be in bbolt now.
func (r *reader) stale() bool {
	return r.checkpoints != nil && r.tx != nil && r.checkpoints.Load() != r.since
}

func (r *reader) get() (*bolt.Tx, error) {
	if r.tx == nil {
		if r.checkpoints != nil {
			r.since = r.checkpoints.Load()
		}
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

// guardHeld checks one guard (no And) as guardHolds does: from the memo
// when no record of its kind was written since it was last read, else in
// r's transaction.
func (s *Store) guardHeld(r *reader, tenant string, g *store.Guard) (bool, error) {
	k := memoKey{tenant, g.Kind, g.ID}
	gen, quiet := s.gens.of(g.Kind).load()
	// A closed store answers from no memory: the read says it is closed.
	if quiet && !s.closed.Load() && s.memo.holds(k, gen, g.Version) {
		return true, nil
	}
	// A record the journal took and bbolt does not hold yet (created.go)
	// has its first version.
	j := s.w.j
	if j != nil {
		if _, ok := j.pendingRaw(tenant, g.Kind, g.ID); ok {
			return g.Version == 1, nil
		}
	}
	// What a transaction opened before the count was loaded reads may be
	// older than the count: it is not remembered.
	remember := quiet && r.tx == nil
	tx, err := r.get()
	if err != nil {
		return false, err
	}
	v, found, err := s.versionOf(tx, tenant, g.Kind, g.ID)
	if err == nil && !found && r.stale() {
		// r's transaction was opened before a checkpoint that may have
		// moved the record from the journal into bbolt: read it again.
		r.close()
		if tx, err = r.get(); err != nil {
			return false, err
		}
		v, found, err = s.versionOf(tx, tenant, g.Kind, g.ID)
	}
	if err != nil || !found {
		return false, err
	}
	if remember {
		s.memo.put(k, gen, v)
	}
	return v == g.Version, nil
}
