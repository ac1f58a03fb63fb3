// Package boltstore is the embedded store: one bbolt file, one process.
//
// Layout (bucket names in quotes, [k] a key):
//
//	"tenants"/<tenant>/"k/"+<kind>/"r"  [id] -> record JSON
//	                               /"u"  [unique key] -> id
//	                               /"s"  [seq, 8 bytes big-endian] -> id
//	                               [n]   record count, 8 bytes big-endian
//	                               (the kind bucket's sequence is the last seq)
//	                               /"x"/<field> secondary indexes (index.go)
//	"tenants"/<tenant>/"q"            [resource] -> usage, 8 bytes big-endian
//	"tenants"/<tenant>/"e"            [seq, 8 bytes big-endian] -> event JSON
//	"tenants"/<tenant>  [h]           head of the event chain {seq, hash}
//	"intents"                         [id] -> intent JSON
//	"meta"                            index markers (index.go); [journal_lsn]
//	                                  the last journal record bbolt holds
//
// Beside the file, the event journal (journal.go) holds event appends
// made durable with one sync until a commit copies them into the file.
//
// Writes go through a group committer (commit.go) so that concurrent
// writers share one commit and one fsync. A write function may run more
// than once (whenever another function of its group fails, each runs
// again alone), so every
// write function starts from scratch and reports its outcome through a
// variable it resets first. Expected refusals (exists, quota, conflict)
// are reported that way with a nil return, which leaves the transaction
// untouched instead of forcing bbolt to re-run the whole batch.
package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/internal/storekit"
)

// ErrLocked is returned by Open when another process holds the file.
var ErrLocked = errors.New("store file is locked by another process (is hsmcad running?)")

// Options tune Open.
type Options struct {
	// Timeout bounds the wait for the exclusive file lock (default 1s).
	Timeout time.Duration
	// MaxBatchDelay is an extra wait for other writes before each commit
	// (default none). Without it a write that finds no commit running
	// starts one at once, and writes arriving during a commit's fsync
	// share the next one; a wait only adds latency to an idle daemon,
	// where one API request makes several writes.
	MaxBatchDelay time.Duration
	// Indexes are the secondary indexes to keep (see store.Query); Open
	// builds missing ones and drops those no longer declared.
	Indexes []store.Index
	// JournalSize is the size of the event journal beside the file
	// (journal.go; default DefaultJournalSize). Negative: no journal,
	// every event append is a bbolt commit.
	JournalSize int64
}

// Store is a store.Store on one bbolt file.
type Store struct {
	db       *bolt.DB
	path     string
	throttle *storekit.Throttler
	w        *committer
	dec      *storekit.DecodeCache
	ix       storekit.Declared
	// gens count the writes of each kind of record, memo the versions
	// guards last read (memo.go).
	gens *writeGens
	memo guardMemo
	// readAhead is what Open read of the file before opening it.
	readAhead int64
	closed    atomic.Bool
}

var _ store.Store = (*Store)(nil)

var (
	bTenants = []byte("tenants")
	bIntents = []byte("intents")
	bRecs    = []byte("r")
	bUniq    = []byte("u")
	bSeq     = []byte("s")
	bQuota   = []byte("q")
	bEvents  = []byte("e")
	kCount   = []byte("n")
	kHead    = []byte("h")
)

// initialMmapSize is the mapping bbolt starts with (see Open).
const initialMmapSize = 1 << 30

// Open opens or creates the store file at path.
func Open(path string, opts Options) (*Store, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	ix, err := storekit.Declare(opts.Indexes)
	if err != nil {
		return nil, err
	}
	s := &Store{path: path, throttle: storekit.NewThrottler(), dec: storekit.NewDecodeCache(), ix: ix, gens: &writeGens{}}
	s.readAhead = readAhead(path) // after a crash: see warm.go
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.Timeout,
		// bbolt maps the file and remaps it, doubling, as it grows; a
		// remap waits for every open read transaction and holds back new
		// ones and the commit meanwhile: a stall of every request in flight.
		// Mapped address space costs no memory until pages are touched, so
		// the first gigabyte is mapped at once (and remaps after it come
		// a gigabyte at a time).
		InitialMmapSize: initialMmapSize,
		// The free-page list as a map of runs by size: a commit finds free
		// pages without scanning a long sorted array.
		FreelistType: bolt.FreelistMapType,
		// The free-page list is not written with each commit: bbolt
		// rebuilds it at open from the pages its trees reach. A file whose
		// pages were freed by the thousand (every commit frees the pages
		// it copied) otherwise writes and syncs the whole list, tens of
		// pages, with every commit, however small. Close writes the list
		// (the next open reads it); an open after a crash walks the file
		// (warm.go). Files stay readable by builds that write the list,
		// both ways.
		NoFreelistSync: true,
	})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("open %s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("open bolt store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bTenants, bIntents} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return s.syncIndexes(tx)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialise bolt store %s: %w", path, err)
	}
	s.db, s.w = db, &committer{db: db, gens: s.gens, delay: max(opts.MaxBatchDelay, 0), guard: s.guardHeld}
	if opts.JournalSize >= 0 {
		size := opts.JournalSize
		if size == 0 {
			size = DefaultJournalSize
		}
		if s.w.j, err = openJournal(db, path, size, s.gens, s.putJournaled); err != nil {
			db.Close()
			return nil, fmt.Errorf("bolt store %s: %w", path, err)
		}
	}
	return s, nil
}

// JournalStats reports the event journal (zeros without one): the bytes
// written since it was last copied into the file, its size, and how many
// copies were made since Open.
func (s *Store) JournalStats() (used, size int64, checkpoints uint64) {
	if j := s.w.j; j != nil {
		return j.used.Load(), j.size, j.checkpoints.Load()
	}
	return 0, 0, 0
}

// OnBackground sets fn to be called when the store starts work of its own,
// off every request's path (the copy of the event journal into the file: a
// bbolt commit of up to a second of events, which a request's write may
// queue behind); fn returns the function called when that work ends. The
// daemon uses it to give the work a processor of its own (internal/daemon's
// procTuner). nil removes it.
func (s *Store) OnBackground(fn func() (done func())) {
	if fn == nil {
		s.w.background.Store(nil)
		return
	}
	s.w.background.Store(&fn)
}

// Backend names the implementation.
func (s *Store) Backend() string { return "bolt" }

// Path is the file the store lives in.
func (s *Store) Path() string { return s.path }

// Close copies the event journal into the file with a last commit that
// also writes bbolt's list of free pages (so that the next open reads the
// list instead of walking the file), and releases both.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	errs := []error{s.w.run(func(*bolt.Tx) error {
		// Read by this transaction's commit, on this goroutine.
		s.db.NoFreelistSync = false
		return nil
	})}
	errs = append(errs, s.db.Close())
	if j := s.w.j; j != nil {
		errs = append(errs, j.f.Close())
	}
	return errors.Join(errs...)
}

// ReadAhead is how many bytes Open read from the file before opening it
// (0 unless the last stop left no free-page list in a large file).
func (s *Store) ReadAhead() int64 { return s.readAhead }

// Ping answers nil while the file is open.
func (s *Store) Ping(ctx context.Context) error {
	return s.view(ctx, func(tx *bolt.Tx) error { return nil })
}

func wrap(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}

func (s *Store) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return wrap(s.db.View(fn))
}

// refusal carries an expected refusal (exists, quota, conflict, not found)
// out of a batch function without aborting the shared transaction. A
// function refuses before it writes anything but empty buckets.
type refusal struct{ err error }

func (r refusal) Error() string { return r.err.Error() }

func refuse(format string, args ...any) error {
	return refusal{fmt.Errorf(format, args...)}
}

// batch runs fn in a shared write transaction. A refusal from fn is the
// caller's answer; any other error aborts the transaction (the committer
// then re-runs fn alone and reports that run's error).
func (s *Store) batch(ctx context.Context, fn func(*bolt.Tx) error) error {
	return s.batchEvents(ctx, fn, nil)
}

// batchEvents is batch for an event append, which the journal may take
// instead of fn.
func (s *Store) batchEvents(ctx context.Context, fn func(*bolt.Tx) error, ev *eventAppend) error {
	return s.batchCall(ctx, fn, ev, nil)
}

// batchCall is batch for an event append or a new record, which the
// journal may take instead of fn (then fn does not run).
func (s *Store) batchCall(ctx context.Context, fn func(*bolt.Tx) error, ev *eventAppend, cr *createCall) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var outcome error
	err := s.w.runCall(&commitCall{ev: ev, cr: cr, done: make(chan error, 1), fn: func(tx *bolt.Tx) error {
		outcome = nil
		err := fn(tx)
		if r, ok := err.(refusal); ok {
			outcome = r.err
			return nil
		}
		return err
	}})
	if err != nil {
		return wrap(err)
	}
	return outcome
}

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func getU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func kindName(kind string) []byte { return []byte("k/" + kind) }

func tenantBucket(tx *bolt.Tx, tenant string, create bool) (*bolt.Bucket, error) {
	root := tx.Bucket(bTenants)
	if root == nil {
		return nil, errors.New("bolt store: tenants bucket missing")
	}
	if create {
		return root.CreateBucketIfNotExists([]byte(tenant))
	}
	return root.Bucket([]byte(tenant)), nil
}

// kindBuckets are the buckets of one (tenant, kind).
type kindBuckets struct {
	kind, recs, uniq, seq *bolt.Bucket
	tenant                *bolt.Bucket
}

func openKind(tx *bolt.Tx, tenant, kind string, create bool) (*kindBuckets, error) {
	tb, err := tenantBucket(tx, tenant, create)
	if err != nil || tb == nil {
		return nil, err
	}
	kb := &kindBuckets{tenant: tb}
	if !create {
		if kb.kind = tb.Bucket(kindName(kind)); kb.kind == nil {
			return nil, nil
		}
		kb.recs, kb.uniq, kb.seq = kb.kind.Bucket(bRecs), kb.kind.Bucket(bUniq), kb.kind.Bucket(bSeq)
		return kb, nil
	}
	if kb.kind, err = tb.CreateBucketIfNotExists(kindName(kind)); err != nil {
		return nil, err
	}
	for _, p := range []struct {
		dst  **bolt.Bucket
		name []byte
	}{{&kb.recs, bRecs}, {&kb.uniq, bUniq}, {&kb.seq, bSeq}} {
		if *p.dst, err = kb.kind.CreateBucketIfNotExists(p.name); err != nil {
			return nil, err
		}
	}
	kb.seq.FillPercent = appendFill
	return kb, nil
}

// appendFill is the split threshold of buckets whose keys only grow (the
// creation-order index, the event chains). bolt splits a full page at 50%
// by default, which suits random inserts; appends would leave every page
// of those buckets half empty, and the file twice their size.
const appendFill = 0.95

func (kb *kindBuckets) addCount(delta int64) error {
	n := int64(getU64(kb.kind.Get(kCount))) + delta
	return kb.kind.Put(kCount, u64(uint64(max(n, 0))))
}

// deleteIntent retires the intent id if it belongs to tenant.
func deleteIntent(tx *bolt.Tx, tenant, id string) error {
	if id == "" {
		return nil
	}
	b := tx.Bucket(bIntents)
	v := b.Get([]byte(id))
	if v == nil {
		return nil
	}
	var in store.Intent
	if err := json.Unmarshal(v, &in); err != nil || in.Tenant != tenant {
		return nil
	}
	return b.Delete([]byte(id))
}

// Create inserts rec; see store.Store.
func (s *Store) Create(ctx context.Context, rec *store.Record, opts store.WriteOpts) error {
	data, uniq, err := storekit.CheckRecord(rec)
	if err != nil {
		return err
	}
	if err := storekit.CheckOpts(opts, true); err != nil {
		return err
	}
	if err := storekit.CheckGuard(rec.Tenant, opts.Guard); err != nil {
		return err
	}
	var event []json.RawMessage
	if opts.Event != nil {
		if event, err = storekit.NormalizeEvents(rec.Tenant, []json.RawMessage{opts.Event}); err != nil {
			return err
		}
	}
	now := storekit.Now()
	var stored store.Record
	fn := func(tx *bolt.Tx) error {
		if g := opts.Guard; g != nil {
			ok, err := s.guardHolds(tx, rec.Tenant, g)
			if err != nil {
				return err
			}
			if !ok {
				return refuse("%w", storekit.GuardFailed(g))
			}
		}
		kb, err := openKind(tx, rec.Tenant, rec.Kind, true)
		if err != nil {
			return err
		}
		if kb.recs.Get([]byte(rec.ID)) != nil {
			return refuse("%w: %s %s/%s", store.ErrExists, rec.Kind, rec.Tenant, rec.ID)
		}
		for _, u := range uniq {
			if kb.uniq.Get([]byte(u)) != nil {
				return refuse("%w: %s %s unique key %q", store.ErrExists, rec.Kind, rec.Tenant, u)
			}
		}
		resource := ""
		if q := opts.Quota; q != nil {
			resource = q.Resource
			usage := int64(0)
			if qb := kb.tenant.Bucket(bQuota); qb != nil {
				usage = int64(getU64(qb.Get([]byte(q.Resource))))
			}
			if q.Limit >= 0 && usage+1 > q.Limit {
				return refuse("%w: %s %s: %d of %d", store.ErrQuotaExceeded, rec.Tenant, q.Resource, usage, q.Limit)
			}
		}
		seq, err := kb.kind.NextSequence()
		if err != nil {
			return err
		}
		stored = *rec
		stored.Unique, stored.Data = uniq, data
		stored.Seq, stored.Version, stored.Created, stored.Updated = seq, 1, now, now
		b, err := encodeRecord(&stored)
		if err != nil {
			return err
		}
		if err := s.putNew(kb, &journaledCreate{rec: &stored, raw: b, resource: resource}); err != nil {
			return err
		}
		if err := deleteIntent(tx, rec.Tenant, opts.Intent); err != nil {
			return err
		}
		if event != nil {
			_, err := appendEventsTx(tx, rec.Tenant, event)
			return err
		}
		return nil
	}
	var cr *createCall
	if s.w.j != nil && opts.Intent == "" {
		// The journal may take it (created.go).
		cr = &createCall{rec: rec, data: data, uniq: uniq, quota: opts.Quota, guard: opts.Guard, event: event}
	}
	if err := s.batchCall(ctx, fn, nil, cr); err != nil {
		return err
	}
	if cr != nil && cr.taken {
		if cr.refused != nil {
			return cr.refused
		}
		stored = cr.stored
	}
	*rec = stored
	return nil
}

// EventsWithCreate: Create takes WriteOpts.Event.
func (s *Store) EventsWithCreate() {}

// Get returns one record.
func (s *Store) Get(ctx context.Context, kind, tenant, id string) (*store.Record, error) {
	if err := storekit.CheckRef(kind, tenant, id); err != nil {
		return nil, err
	}
	if j := s.w.j; j != nil {
		if raw, ok := j.pendingRaw(tenant, kind, id); ok {
			return s.journaled(ctx, kind, tenant, id, raw)
		}
	}
	var rec *store.Record
	err := s.view(ctx, func(tx *bolt.Tx) error {
		kb, err := openKind(tx, tenant, kind, false)
		if err != nil {
			return err
		}
		var v []byte
		if kb != nil {
			v = kb.recs.Get([]byte(id))
		}
		if v == nil {
			return fmt.Errorf("%w: %s %s/%s", store.ErrNotFound, kind, tenant, id)
		}
		rec, err = s.dec.Decode(kind+"\x00"+tenant+"\x00"+id, v, decodeRecord)
		return err
	})
	return rec, err
}

// GetByUnique returns the record holding a unique key.
func (s *Store) GetByUnique(ctx context.Context, kind, tenant, key string) (*store.Record, error) {
	if err := storekit.CheckRef(kind, tenant, key); err != nil {
		return nil, err
	}
	if j := s.w.j; j != nil {
		if id, raw, ok := j.pendingByUnique(tenant, kind, key); ok {
			return s.journaled(ctx, kind, tenant, id, raw)
		}
	}
	var rec *store.Record
	err := s.view(ctx, func(tx *bolt.Tx) error {
		kb, err := openKind(tx, tenant, kind, false)
		if err != nil {
			return err
		}
		var v, id []byte
		if kb != nil {
			if id = kb.uniq.Get([]byte(key)); id != nil {
				v = kb.recs.Get(id)
			}
		}
		if v == nil {
			return fmt.Errorf("%w: %s %s unique key %q", store.ErrNotFound, kind, tenant, key)
		}
		rec, err = s.dec.Decode(kind+"\x00"+tenant+"\x00"+string(id), v, decodeRecord)
		return err
	})
	return rec, err
}

// Update replaces rec if its version is current; see store.Store.
func (s *Store) Update(ctx context.Context, rec *store.Record, opts store.WriteOpts) error {
	data, uniq, err := storekit.CheckRecord(rec)
	if err != nil {
		return err
	}
	if err := storekit.CheckOpts(opts, false); err != nil {
		return err
	}
	if err := storekit.NoEvent(opts); err != nil {
		return err
	}
	now := storekit.Now()
	var stored store.Record
	err = s.batch(ctx, func(tx *bolt.Tx) error {
		kb, err := openKind(tx, rec.Tenant, rec.Kind, false)
		if err != nil {
			return err
		}
		id := []byte(rec.ID)
		var v []byte
		if kb != nil {
			v = kb.recs.Get(id)
		}
		if v == nil {
			return refuse("%w: %s %s/%s", store.ErrNotFound, rec.Kind, rec.Tenant, rec.ID)
		}
		old, err := decodeRecord(v)
		if err != nil {
			return err
		}
		if old.Version != rec.Version {
			return refuse("%w: %s %s/%s is at version %d, not %d", store.ErrVersionConflict,
				rec.Kind, rec.Tenant, rec.ID, old.Version, rec.Version)
		}
		for _, u := range uniq {
			if owner := kb.uniq.Get([]byte(u)); owner != nil && !bytes.Equal(owner, id) {
				return refuse("%w: %s %s unique key %q", store.ErrExists, rec.Kind, rec.Tenant, u)
			}
		}
		for _, u := range old.Unique {
			if owner := kb.uniq.Get([]byte(u)); bytes.Equal(owner, id) {
				if err := kb.uniq.Delete([]byte(u)); err != nil {
					return err
				}
			}
		}
		for _, u := range uniq {
			if err := kb.uniq.Put([]byte(u), id); err != nil {
				return err
			}
		}
		stored = *rec
		stored.Unique, stored.Data = uniq, data
		stored.Seq, stored.Created = old.Seq, old.Created
		stored.Version, stored.Updated = old.Version+1, now
		b, err := encodeRecord(&stored)
		if err != nil {
			return err
		}
		s.gens.touch(rec.Kind)
		if err := kb.recs.Put(id, b); err != nil {
			return err
		}
		if err := s.moveIndexes(kb, old, &stored); err != nil {
			return err
		}
		return deleteIntent(tx, rec.Tenant, opts.Intent)
	})
	if err != nil {
		return err
	}
	*rec = stored
	return nil
}

// Delete removes a record; see store.Store.
func (s *Store) Delete(ctx context.Context, kind, tenant, id string, opts store.WriteOpts) error {
	if err := storekit.CheckRef(kind, tenant, id); err != nil {
		return err
	}
	if err := storekit.CheckOpts(opts, true); err != nil {
		return err
	}
	if err := storekit.NoEvent(opts); err != nil {
		return err
	}
	return s.batch(ctx, func(tx *bolt.Tx) error {
		kb, err := openKind(tx, tenant, kind, false)
		if err != nil {
			return err
		}
		var v []byte
		if kb != nil {
			v = kb.recs.Get([]byte(id))
		}
		if v == nil {
			return refuse("%w: %s %s/%s", store.ErrNotFound, kind, tenant, id)
		}
		old, err := decodeRecord(v)
		if err != nil {
			return err
		}
		for _, u := range old.Unique {
			if owner := kb.uniq.Get([]byte(u)); bytes.Equal(owner, []byte(id)) {
				if err := kb.uniq.Delete([]byte(u)); err != nil {
					return err
				}
			}
		}
		if err := kb.seq.Delete(u64(old.Seq)); err != nil {
			return err
		}
		if err := s.moveIndexes(kb, old, nil); err != nil {
			return err
		}
		s.gens.touch(kind)
		if err := kb.recs.Delete([]byte(id)); err != nil {
			return err
		}
		if err := kb.addCount(-1); err != nil {
			return err
		}
		if q := opts.Quota; q != nil {
			if err := addQuota(kb.tenant, q.Resource, -1); err != nil {
				return err
			}
		}
		return deleteIntent(tx, tenant, opts.Intent)
	})
}

// List answers a query; see store.Query for which queries the seq index
// and the declared indexes serve. The rest read the kind's records.
func (s *Store) List(ctx context.Context, q store.Query) (*store.Page, error) {
	plan, err := storekit.CheckQuery(q)
	if err != nil {
		return nil, err
	}
	if err := s.settle(q.Tenant, q.Kind); err != nil {
		return nil, err
	}
	var page *store.Page
	err = s.view(ctx, func(tx *bolt.Tx) error {
		kb, err := openKind(tx, q.Tenant, q.Kind, false)
		if err != nil {
			return err
		}
		if kb == nil {
			page = &store.Page{Records: []store.Record{}}
			if plan.Mode == storekit.CursorMode && len(q.Filters) > 0 {
				page.Total = -1
			}
			return nil
		}
		if plan.Mode == storekit.OffsetMode && q.SortBy == "" && len(q.Filters) == 0 {
			page, err = offsetBySeq(kb, q)
			return err
		}
		indexed := func(f string) bool { return s.ix.Has(q.Kind, f) }
		var ok bool
		if page, ok, err = storekit.IndexedList(q, plan, indexed, boltIndex{kb}); ok || err != nil {
			return err
		}
		if plan.Mode == storekit.OffsetMode {
			var all []store.Record
			err := kb.recs.ForEach(func(_, v []byte) error {
				r, err := decodeRecord(v)
				if err != nil {
					return err
				}
				all = append(all, *r)
				return nil
			})
			if err != nil {
				return err
			}
			page = storekit.OffsetPage(all, q)
			return nil
		}
		page, err = storekit.CursorPage(q, plan, func(from uint64, resume bool, n int) ([]store.Record, uint64, bool, error) {
			return walkSeq(kb, from, resume, q.Desc, n)
		})
		if err != nil {
			return err
		}
		if len(q.Filters) == 0 {
			page.Total = int(getU64(kb.kind.Get(kCount)))
		}
		return nil
	})
	return storekit.Finish(q, plan, page), err
}

// offsetBySeq answers offset paging in creation order without filters
// from the seq index: it steps over the skipped entries without reading
// their records and reads only the page, so a page deep in a large kind
// costs the offset in index steps, not the whole kind in decoded records.
func offsetBySeq(kb *kindBuckets, q store.Query) (*store.Page, error) {
	page := &store.Page{Total: int(getU64(kb.kind.Get(kCount))), Records: []store.Record{}}
	c := kb.seq.Cursor()
	k, id := c.First()
	if q.Desc {
		k, id = c.Last()
	}
	for skip := q.Offset; k != nil && skip > 0; skip-- {
		k, id = step(c, q.Desc)
	}
	for ; k != nil && (q.Limit == 0 || len(page.Records) < q.Limit); k, id = step(c, q.Desc) {
		v := kb.recs.Get(id)
		if v == nil {
			return nil, fmt.Errorf("bolt store: seq index points at missing record %q", id)
		}
		r, err := decodeRecord(v)
		if err != nil {
			return nil, err
		}
		page.Records = append(page.Records, *r)
	}
	return page, nil
}

// walkSeq is the storekit.Fetch of one read transaction.
func walkSeq(kb *kindBuckets, from uint64, resume, desc bool, n int) ([]store.Record, uint64, bool, error) {
	c := kb.seq.Cursor()
	var k, id []byte
	switch {
	case !resume && !desc:
		k, id = c.First()
	case !resume && desc:
		k, id = c.Last()
	case !desc:
		k, id = c.Seek(u64(from + 1))
	default:
		// Seek lands on the first key >= from (or nowhere); the walk
		// continues at the key before it.
		if k, _ = c.Seek(u64(from)); k == nil {
			k, id = c.Last()
		} else {
			k, id = c.Prev()
		}
	}
	out := make([]store.Record, 0, n)
	var last uint64
	for ; k != nil && len(out) < n; k, id = step(c, desc) {
		v := kb.recs.Get(id)
		if v == nil {
			return nil, 0, false, fmt.Errorf("bolt store: seq index points at missing record %q", id)
		}
		r, err := decodeRecord(v)
		if err != nil {
			return nil, 0, false, err
		}
		out = append(out, *r)
		last = getU64(k)
	}
	return out, last, len(out) == n, nil
}

func step(c *bolt.Cursor, desc bool) ([]byte, []byte) {
	if desc {
		return c.Prev()
	}
	return c.Next()
}

// CountRecords counts the records of a kind in a tenant.
func (s *Store) CountRecords(ctx context.Context, kind, tenant string) (int64, error) {
	if err := storekit.CheckName("kind", kind); err != nil {
		return 0, err
	}
	if err := storekit.CheckName("tenant", tenant); err != nil {
		return 0, err
	}
	if err := s.settle(tenant, kind); err != nil {
		return 0, err
	}
	var n int64
	err := s.view(ctx, func(tx *bolt.Tx) error {
		kb, err := openKind(tx, tenant, kind, false)
		if err != nil || kb == nil {
			return err
		}
		n = int64(getU64(kb.kind.Get(kCount)))
		return nil
	})
	return n, err
}

func checkQuotaRef(tenant, resource string) error {
	if err := storekit.CheckName("tenant", tenant); err != nil {
		return err
	}
	return storekit.CheckKey("quota resource", resource)
}

// addQuota moves a counter by delta, clamped at zero.
func addQuota(tb *bolt.Bucket, resource string, delta int64) error {
	qb, err := tb.CreateBucketIfNotExists(bQuota)
	if err != nil {
		return err
	}
	n := int64(getU64(qb.Get([]byte(resource)))) + delta
	return qb.Put([]byte(resource), u64(uint64(max(n, 0))))
}

// ReserveQuota adds n to a counter if the result stays within limit.
func (s *Store) ReserveQuota(ctx context.Context, tenant, resource string, n, limit int64) error {
	if err := checkQuotaRef(tenant, resource); err != nil {
		return err
	}
	if n < 0 {
		return storekit.Invalid("negative quota reservation")
	}
	return s.batch(ctx, func(tx *bolt.Tx) error {
		tb, err := tenantBucket(tx, tenant, true)
		if err != nil {
			return err
		}
		usage := int64(0)
		if qb := tb.Bucket(bQuota); qb != nil {
			usage = int64(getU64(qb.Get([]byte(resource))))
		}
		if limit >= 0 && usage+n > limit {
			return refuse("%w: %s %s: %d + %d over %d", store.ErrQuotaExceeded, tenant, resource, usage, n, limit)
		}
		return addQuota(tb, resource, n)
	})
}

// ReleaseQuota subtracts n, never below zero.
func (s *Store) ReleaseQuota(ctx context.Context, tenant, resource string, n int64) error {
	if err := checkQuotaRef(tenant, resource); err != nil {
		return err
	}
	if n < 0 {
		return storekit.Invalid("negative quota release")
	}
	return s.batch(ctx, func(tx *bolt.Tx) error {
		tb, err := tenantBucket(tx, tenant, true)
		if err != nil {
			return err
		}
		return addQuota(tb, resource, -n)
	})
}

// QuotaUsage reads a counter (0 when never set).
func (s *Store) QuotaUsage(ctx context.Context, tenant, resource string) (int64, error) {
	if err := checkQuotaRef(tenant, resource); err != nil {
		return 0, err
	}
	if j := s.w.j; j != nil && j.holdsQuota(tenant, resource) {
		if err := s.copyJournal(); err != nil {
			return 0, err
		}
	}
	var n int64
	err := s.view(ctx, func(tx *bolt.Tx) error {
		tb, err := tenantBucket(tx, tenant, false)
		if err != nil || tb == nil {
			return err
		}
		if qb := tb.Bucket(bQuota); qb != nil {
			n = int64(getU64(qb.Get([]byte(resource))))
		}
		return nil
	})
	return n, err
}

// SetQuotaUsage overwrites a counter.
func (s *Store) SetQuotaUsage(ctx context.Context, tenant, resource string, n int64) error {
	if err := checkQuotaRef(tenant, resource); err != nil {
		return err
	}
	if n < 0 {
		return storekit.Invalid("negative quota usage")
	}
	return s.batch(ctx, func(tx *bolt.Tx) error {
		tb, err := tenantBucket(tx, tenant, true)
		if err != nil {
			return err
		}
		qb, err := tb.CreateBucketIfNotExists(bQuota)
		if err != nil {
			return err
		}
		return qb.Put([]byte(resource), u64(uint64(n)))
	})
}

// PutIntent stores (or replaces) an intent.
func (s *Store) PutIntent(ctx context.Context, in *store.Intent) error {
	cp, err := storekit.CheckIntent(in, storekit.Now())
	if err != nil {
		return err
	}
	b, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	return s.batch(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bIntents).Put([]byte(cp.ID), b)
	})
}

// DeleteIntent removes an intent; an absent one is not an error.
func (s *Store) DeleteIntent(ctx context.Context, id string) error {
	if err := storekit.CheckKey("intent id", id); err != nil {
		return err
	}
	return s.batch(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bIntents).Delete([]byte(id))
	})
}

// ListIntents returns every intent, oldest first.
func (s *Store) ListIntents(ctx context.Context) ([]store.Intent, error) {
	out := []store.Intent{}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bIntents).ForEach(func(_, v []byte) error {
			var in store.Intent
			if err := json.Unmarshal(v, &in); err != nil {
				return fmt.Errorf("bolt store: corrupt intent: %w", err)
			}
			out = append(out, in)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	storekit.SortIntents(out)
	return out, nil
}

type head struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// AppendEvents appends to a tenant's chain; see store.Store.
func (s *Store) AppendEvents(ctx context.Context, tenant string, data []json.RawMessage) ([]store.Event, error) {
	norm, err := storekit.NormalizeEvents(tenant, data)
	if err != nil {
		return nil, err
	}
	if len(norm) == 0 {
		return []store.Event{}, nil
	}
	out, _, err := s.appendEvents(ctx, tenant, norm, make([]*store.Guard, len(norm)))
	return out, err
}

// AppendEventsIf is AppendEvents under guards (store.GuardedEvents):
// each guard is checked in the transaction of the append, so that no
// write to the guarded record can fall between the check and the append.
func (s *Store) AppendEventsIf(ctx context.Context, tenant string, data []json.RawMessage, guards []*store.Guard) ([]store.Event, []int, error) {
	if err := storekit.CheckEventGuards(tenant, len(data), guards); err != nil {
		return nil, nil, err
	}
	norm, err := storekit.NormalizeEvents(tenant, data)
	if err != nil {
		return nil, nil, err
	}
	return s.appendEvents(ctx, tenant, norm, guards)
}

// appendEvents appends norm (normalized; guards[i], when set, must hold
// for norm[i] to go in) through the journal or a bbolt commit.
func (s *Store) appendEvents(ctx context.Context, tenant string, norm []json.RawMessage, guards []*store.Guard) ([]store.Event, []int, error) {
	a := &eventAppend{tenant: tenant, norm: norm, guards: guards}
	err := s.batchEvents(ctx, func(tx *bolt.Tx) error {
		// A group commit may run this more than once: start afresh.
		a.out, a.dropped = nil, nil
		keep := make([]json.RawMessage, 0, len(norm))
		for i := range norm {
			if g := guards[i]; g != nil {
				ok, err := s.guardHolds(tx, tenant, g)
				if err != nil {
					return err
				}
				if !ok {
					a.dropped = append(a.dropped, i)
					continue
				}
			}
			keep = append(keep, norm[i])
		}
		if len(keep) == 0 {
			return nil
		}
		var err error
		a.out, err = appendEventsTx(tx, tenant, keep)
		return err
	}, a)
	if err != nil {
		return nil, nil, err
	}
	if a.out == nil {
		a.out = []store.Event{}
	}
	return a.out, a.dropped, nil
}

// guardHolds reports whether a guard's record exists at its version.
func (s *Store) guardHolds(tx *bolt.Tx, tenant string, g *store.Guard) (bool, error) {
	v, found, err := s.versionOf(tx, tenant, g.Kind, g.ID)
	return found && v == g.Version, err
}

// versionOf is the version of a record (found false when there is none).
func (s *Store) versionOf(tx *bolt.Tx, tenant, kind, id string) (uint64, bool, error) {
	kb, err := openKind(tx, tenant, kind, false)
	if err != nil || kb == nil {
		return 0, false, err
	}
	v := kb.recs.Get([]byte(id))
	if v == nil {
		return 0, false, nil
	}
	ver, err := recordVersion(v)
	if err != nil {
		return 0, false, err
	}
	return ver, true, nil
}

// appendEventsTx links norm (normalized) to the tenant's chain in tx.
func appendEventsTx(tx *bolt.Tx, tenant string, norm []json.RawMessage) ([]store.Event, error) {
	tb, eb, h, err := chainOf(tx, tenant)
	if err != nil {
		return nil, err
	}
	evs := storekit.ChainEvents(tenant, h.Seq, h.Hash, norm, storekit.Now())
	raw := make([][]byte, len(evs))
	for i := range evs {
		if raw[i], err = storekit.MarshalEvent(&evs[i]); err != nil {
			return nil, err
		}
	}
	return evs, appendChain(tb, eb, evs, raw)
}

// chainOf opens tenant's chain in tx, creating its buckets: the tenant's
// bucket (which holds the head), the events' bucket and the head.
func chainOf(tx *bolt.Tx, tenant string) (tb, eb *bolt.Bucket, h head, err error) {
	if tb, err = tenantBucket(tx, tenant, true); err != nil {
		return nil, nil, h, err
	}
	if eb, err = tb.CreateBucketIfNotExists(bEvents); err != nil {
		return nil, nil, h, err
	}
	eb.FillPercent = appendFill
	h, err = readHead(tb)
	return tb, eb, h, err
}

// readHead is the chain head stored in a tenant's bucket (zero before the
// first event).
func readHead(tb *bolt.Bucket) (head, error) {
	var h head
	if v := tb.Get(kHead); v != nil {
		if err := json.Unmarshal(v, &h); err != nil {
			return h, fmt.Errorf("bolt store: corrupt event head: %w", err)
		}
	}
	return h, nil
}

// appendChain stores evs (raw[i] the JSON of evs[i]), which follow the
// chain's head, and moves the head to the last.
func appendChain(tb, eb *bolt.Bucket, evs []store.Event, raw [][]byte) error {
	if len(evs) == 0 {
		return nil
	}
	for i := range evs {
		if err := eb.Put(u64(evs[i].Seq), raw[i]); err != nil {
			return err
		}
	}
	last := evs[len(evs)-1]
	hb, err := json.Marshal(head{Seq: last.Seq, Hash: last.Hash})
	if err != nil {
		return err
	}
	return tb.Put(kHead, hb)
}

// ListEvents returns up to limit events after afterSeq, oldest first.
func (s *Store) ListEvents(ctx context.Context, tenant string, afterSeq uint64, limit int) ([]store.Event, error) {
	if err := storekit.CheckName("tenant", tenant); err != nil {
		return nil, err
	}
	if limit < 0 {
		return nil, storekit.Invalid("negative limit")
	}
	out := []store.Event{}
	if afterSeq == ^uint64(0) {
		return out, nil
	}
	// The journal's events first: any that bbolt takes meanwhile are
	// then read from bbolt, and the rest follow its last.
	var pending []store.Event
	if s.w.j != nil {
		pending = s.w.j.pendingAfter(tenant, afterSeq, limit)
	}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		tb, err := tenantBucket(tx, tenant, false)
		if err != nil || tb == nil {
			return err
		}
		eb := tb.Bucket(bEvents)
		if eb == nil {
			return nil
		}
		c := eb.Cursor()
		for k, v := c.Seek(u64(afterSeq + 1)); k != nil && (limit == 0 || len(out) < limit); k, v = c.Next() {
			var e store.Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("bolt store: corrupt event: %w", err)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	last := afterSeq
	if len(out) > 0 {
		last = out[len(out)-1].Seq
	}
	for _, e := range pending {
		if limit > 0 && len(out) >= limit {
			break
		}
		if e.Seq > last {
			out = append(out, e)
			last = e.Seq
		}
	}
	return out, nil
}

// EventHead returns the sequence number and hash of the newest event of
// a tenant's chain (0 and "" before the first). The verifier compares it
// with the last record it read, which exposes a deletion at the end.
func (s *Store) EventHead(ctx context.Context, tenant string) (uint64, string, error) {
	if err := storekit.CheckName("tenant", tenant); err != nil {
		return 0, "", err
	}
	var (
		pending head
		ok      bool
	)
	if s.w.j != nil {
		pending, ok = s.w.j.pendingHead(tenant)
	}
	var h head
	err := s.view(ctx, func(tx *bolt.Tx) error {
		tb, err := tenantBucket(tx, tenant, false)
		if err != nil || tb == nil {
			return err
		}
		h, err = readHead(tb)
		return err
	})
	if err != nil {
		return 0, "", err
	}
	if ok && pending.Seq > h.Seq {
		return pending.Seq, pending.Hash, nil
	}
	return h.Seq, h.Hash, nil
}

// EventTenants lists the tenants that have at least one event.
func (s *Store) EventTenants(ctx context.Context) ([]string, error) {
	var pending []string
	if s.w.j != nil {
		pending = s.w.j.pendingTenants()
	}
	out := []string{}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		root := tx.Bucket(bTenants)
		return root.ForEach(func(k, v []byte) error {
			if v != nil {
				return nil
			}
			if tb := root.Bucket(k); tb != nil && tb.Get(kHead) != nil {
				out = append(out, string(k))
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	for _, t := range pending {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out, nil
}

// GetByUniqueThrottled is GetByUnique and Throttle; see store.Store.
func (s *Store) GetByUniqueThrottled(ctx context.Context, kind, tenant, key string, t store.ThrottleRequest) (*store.Record, store.ThrottleResult, error) {
	if err := store.CheckThrottle(t.Key, t.Rate, t.Burst); err != nil {
		return nil, store.ThrottleResult{}, err
	}
	if err := storekit.CheckRef(kind, tenant, key); err != nil {
		return nil, store.ThrottleResult{}, err
	}
	var tr store.ThrottleResult
	tr.Wait, tr.Err = s.Throttle(ctx, t.Key, t.Rate, t.Burst)
	rec, err := s.GetByUnique(ctx, kind, tenant, key)
	return rec, tr, err
}

// GuardChecks: CheckGuard works (store.GuardChecker).
func (s *Store) GuardChecks() bool { return true }

// CheckGuard checks g and its chain alone (store.GuardChecker): the
// records' versions (from the memo when nothing has been written since
// they were last read, else in one read transaction), then the chain's
// rate limit (at most one here), counted if it admits the request. One process holds the
// file, so the check sees every write before it and counts nothing when
// a guard fails.
func (s *Store) CheckGuard(ctx context.Context, tenant string, g *store.Guard) (bool, error) {
	if g == nil {
		return false, fmt.Errorf("%w: no guard to check", store.ErrInvalid)
	}
	if err := storekit.CheckCredentialGuards(tenant, 1, []*store.Guard{g}); err != nil {
		return false, err
	}
	var limit *store.ThrottleRequest
	for c := g; c != nil; c = c.And {
		if c.Throttle != nil {
			if limit != nil {
				return false, fmt.Errorf("%w: at most one rate limit in a guard checked alone", store.ErrInvalid)
			}
			limit = c.Throttle
		}
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	r := &reader{db: s.db}
	if j := s.w.j; j != nil {
		r.checkpoints = &j.checkpoints
	}
	defer r.close()
	for c := g; c != nil; c = c.And {
		t := tenant
		if c.Tenant != "" {
			t = c.Tenant
		}
		held, err := s.guardHeld(r, t, c)
		if err != nil || !held {
			return false, wrap(err)
		}
	}
	if limit != nil && s.throttle.Take(limit.Key, limit.Rate, limit.Burst, time.Now()) > 0 {
		return false, nil
	}
	return true, nil
}

// Throttle keeps its counters in memory: one process holds the bolt file,
// so nothing else shares them, and they need not survive a restart.
func (s *Store) Throttle(ctx context.Context, key string, rate float64, burst int64) (time.Duration, error) {
	if err := store.CheckThrottle(key, rate, burst); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return s.throttle.Take(key, rate, burst, time.Now()), nil
}
