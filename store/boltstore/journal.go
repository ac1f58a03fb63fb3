package boltstore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/internal/storekit"
)

// The event journal makes an event append durable with one fdatasync
// where a bbolt commit needs two (its pages, then its meta page).
//
// A group of writes that holds only event appends (a signature's SUCCESS
// record, a read's access record) is linked to the chains as usual, then
// written as one record to a preallocated file beside the bbolt file and
// synced: that sync is the append's durability. The events stay in memory
// (pending) and readers see them with the chains in bbolt. The next group
// that writes bbolt (any other write, or a checkpoint the journal asks for
// when it is a quarter full, holds checkpointRecords new records, or its
// oldest event is a second old) first
// copies every pending event into its transaction, with the journal's
// sequence number; once that commit is synced the journal is written from
// its start again.
//
// A new record (Create without an intent) goes the same way: its checks
// (id and unique keys free, quota, guard) are made against bbolt and the
// creates pending in the journal, it takes the next sequence number of
// its kind, and it is written to the journal with its event; the record
// stays in memory until the next checkpoint puts it, its unique keys, its
// indexes and its counters into bbolt. A read of one record (by id or
// unique key, or a guard on it) finds it there; a read of many (a list, a
// count, a quota) first has the checkpoint made, so that it reads them
// from bbolt with the rest. A certificate's issuance thus costs one
// fdatasync on its way, where its bbolt commit writes some thirty pages
// and syncs twice.
//
// A record is [length u32][crc32c u32][lsn u64][entries], each entry
// [tenant length u16][tenant][event length u32][event JSON], the JSON
// being exactly what the chain's bucket stores, or a new record:
// [0xFFFF u16][record length u32][record as bbolt stores it][quota
// resource length u16][quota resource] (no resource: no quota counted;
// tenant names are far shorter than 0xFFFF). At open, records are read
// from the start while each checks out and carries the next sequence
// number after the one bbolt holds; they are copied into bbolt, and the
// first record that does not follow (a torn write, zeros, an older pass
// over the file) ends the journal.
type journal struct {
	f    *os.File
	size int64

	// Owned by the committer's leader.
	off     int64  // where the next record goes
	lsn     uint64 // sequence number of the last record written
	applied uint64 // the last record whose events bbolt holds

	mu      sync.Mutex
	pending map[string][]store.Event // by tenant, in chain order
	raw     map[string][][]byte      // each pending event's stored JSON
	since   time.Time                // when the oldest pending event was written
	created createdSet               // records created since the last checkpoint

	// put writes a journaled record into bbolt (Store.putJournaled), in
	// a transaction of gens.
	put  func(tx *bolt.Tx, c *journaledCreate) error
	gens *writeGens

	checkpointing atomic.Bool
	used          atomic.Int64  // j.off, for the metrics
	checkpoints   atomic.Uint64 // copies into bbolt so far
}

const (
	journalHeader = 16
	// DefaultJournalSize is the event journal's size (Options.JournalSize).
	DefaultJournalSize = 4 << 20
)

// checkpointAge is how long events stay in the journal alone at most
// while writes go on.
var checkpointAge = time.Second

// checkpointRecords is how many new records the journal holds at most
// before it asks for a checkpoint. Every write waits for a checkpoint's
// commit, whose time grows with the records it puts: a certificate's
// puts cost some 40 µs of it.
var checkpointRecords = 128

var (
	kJournalLSN = []byte("journal_lsn")
	crcTable    = crc32.MakeTable(crc32.Castagnoli)
)

// JournalPath is the event journal of the store file at path.
func JournalPath(path string) string { return path + "-journal" }

// openJournal opens (creating and preallocating it if needed) the
// journal of the bbolt file at path and copies the events it holds beyond
// what db has into db.
func openJournal(db *bolt.DB, path string, size int64, gens *writeGens, put func(*bolt.Tx, *journaledCreate) error) (*journal, error) {
	jp := JournalPath(path)
	f, err := os.OpenFile(jp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open event journal: %w", err)
	}
	j := &journal{f: f, size: size, pending: map[string][]store.Event{}, raw: map[string][][]byte{}, gens: gens, put: put}
	if err := j.prepare(filepath.Dir(jp)); err != nil {
		f.Close()
		return nil, err
	}
	if err := j.recover(db); err != nil {
		f.Close()
		return nil, err
	}
	return j, nil
}

// prepare makes the file size bytes of zeros (written, not sparse: a sync
// of a write into it then carries no metadata).
func (j *journal) prepare(dir string) error {
	st, err := j.f.Stat()
	if err != nil {
		return fmt.Errorf("event journal: %w", err)
	}
	if st.Size() >= j.size {
		j.size = st.Size()
		return nil
	}
	zeros := make([]byte, 64<<10)
	for off := st.Size(); off < j.size; off += int64(len(zeros)) {
		n := min(int64(len(zeros)), j.size-off)
		if _, err := j.f.WriteAt(zeros[:n], off); err != nil {
			return fmt.Errorf("event journal: %w", err)
		}
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("event journal: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// recover copies the journal's records beyond db's into db.
func (j *journal) recover(db *bolt.DB) error {
	err := db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bMeta); b != nil {
			j.applied = getU64(b.Get(kJournalLSN))
		}
		return nil
	})
	if err != nil {
		return err
	}
	j.lsn = j.applied
	buf := make([]byte, j.size)
	if _, err := j.f.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read event journal: %w", err)
	}
	var (
		evs []journalEntry
		crs []*journaledCreate
	)
	for off := 0; off+journalHeader <= len(buf); {
		n := int(binary.BigEndian.Uint32(buf[off:]))
		end := off + journalHeader + n
		if n == 0 || end > len(buf) || end < off {
			break
		}
		if crc32.Checksum(buf[off+8:end], crcTable) != binary.BigEndian.Uint32(buf[off+4:]) {
			break
		}
		if binary.BigEndian.Uint64(buf[off+8:]) != j.lsn+1 {
			break
		}
		got, created, err := decodeEntries(buf[off+journalHeader : end])
		if err != nil {
			return fmt.Errorf("event journal record %d: %w", j.lsn+1, err)
		}
		evs, crs = append(evs, got...), append(crs, created...)
		j.lsn++
		off = end
	}
	if j.lsn == j.applied {
		return nil
	}
	for _, e := range evs {
		j.pending[e.tenant] = append(j.pending[e.tenant], e.ev)
		j.raw[e.tenant] = append(j.raw[e.tenant], e.raw)
	}
	for _, c := range crs {
		j.created.add(c)
	}
	err = j.gens.update(db, j.apply)
	if err != nil {
		return fmt.Errorf("copy the event journal into the store: %w", err)
	}
	j.checkpointed()
	return nil
}

type journalEntry struct {
	tenant string
	ev     store.Event
	raw    []byte
}

// createMark stands where an event entry's tenant length is: a new record.
const createMark = 0xFFFF

func decodeEntries(b []byte) ([]journalEntry, []*journaledCreate, error) {
	var (
		out     []journalEntry
		created []*journaledCreate
	)
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, nil, errors.New("short entry")
		}
		tl := int(binary.BigEndian.Uint16(b))
		if tl == createMark {
			c, rest, err := decodeCreate(b[2:])
			if err != nil {
				return nil, nil, err
			}
			created, b = append(created, c), rest
			continue
		}
		if len(b) < 2+tl+4 {
			return nil, nil, errors.New("short entry")
		}
		tenant := string(b[2 : 2+tl])
		b = b[2+tl:]
		el := int(binary.BigEndian.Uint32(b))
		if len(b) < 4+el {
			return nil, nil, errors.New("short event")
		}
		raw := slices.Clone(b[4 : 4+el])
		b = b[4+el:]
		var ev store.Event
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, nil, err
		}
		if ev.Tenant != tenant {
			return nil, nil, fmt.Errorf("event of %q filed under %q", ev.Tenant, tenant)
		}
		out = append(out, journalEntry{tenant, ev, raw})
	}
	return out, created, nil
}

// appendCreate adds c's entry to a journal record.
func appendCreate(rec []byte, c *journaledCreate) []byte {
	rec = binary.BigEndian.AppendUint16(rec, createMark)
	rec = binary.BigEndian.AppendUint32(rec, uint32(len(c.raw)))
	rec = append(rec, c.raw...)
	rec = binary.BigEndian.AppendUint16(rec, uint16(len(c.resource)))
	return append(rec, c.resource...)
}

// decodeCreate reads a new record's entry (after its mark) and returns
// the rest.
func decodeCreate(b []byte) (*journaledCreate, []byte, error) {
	if len(b) < 4 {
		return nil, nil, errors.New("short record entry")
	}
	n := int(binary.BigEndian.Uint32(b))
	if len(b) < 4+n+2 {
		return nil, nil, errors.New("short record entry")
	}
	raw := slices.Clone(b[4 : 4+n])
	b = b[4+n:]
	rl := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+rl {
		return nil, nil, errors.New("short record entry")
	}
	c := &journaledCreate{raw: raw, resource: string(b[2 : 2+rl])}
	rec, err := decodeRecord(raw)
	if err != nil {
		return nil, nil, err
	}
	c.rec = rec
	return c, b[2+rl:], nil
}

// apply writes every pending event into tx, chain by chain, with the
// journal's last sequence number; events bbolt holds already are skipped.
func (j *journal) apply(tx *bolt.Tx) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.lsn == j.applied {
		return nil
	}
	for _, c := range j.created.list {
		if err := j.put(tx, c); err != nil {
			return err
		}
	}
	for tenant, evs := range j.pending {
		tb, eb, h, err := chainOf(tx, tenant)
		if err != nil {
			return err
		}
		raw := j.raw[tenant]
		for len(evs) > 0 && evs[0].Seq <= h.Seq {
			evs, raw = evs[1:], raw[1:]
		}
		prev := h
		for _, e := range evs {
			if e.Seq != prev.Seq+1 || e.PrevHash != prev.Hash {
				return fmt.Errorf("bolt store: journaled event %d of %q does not follow its chain (head %d)", e.Seq, tenant, prev.Seq)
			}
			prev = head{Seq: e.Seq, Hash: e.Hash}
		}
		if err := appendChain(tb, eb, evs, raw); err != nil {
			return err
		}
	}
	mb, err := tx.CreateBucketIfNotExists(bMeta)
	if err != nil {
		return err
	}
	return mb.Put(kJournalLSN, u64(j.lsn))
}

// checkpointed is called once a transaction that ran apply is committed:
// bbolt holds every pending event, and the journal starts over.
func (j *journal) checkpointed() {
	// Counted before the records leave the journal: a read that misses
	// them there knows to look again in bbolt (reader.stale).
	j.checkpoints.Add(1)
	j.mu.Lock()
	clear(j.pending)
	clear(j.raw)
	j.created.reset()
	j.since = time.Time{}
	j.mu.Unlock()
	j.off, j.applied = 0, j.lsn
	j.used.Store(0)
	j.checkpointing.Store(false)
}

// eventAppend is an event append the journal may take: its events are
// normalized, guards[i] (when set) must hold for the i-th to go in.
type eventAppend struct {
	tenant  string
	norm    []json.RawMessage
	guards  []*store.Guard
	out     []store.Event
	dropped []int
}

// take links the group's events to their chains and checks its new
// records (guards, ids, unique keys and quotas against db and the records
// pending), makes them durable in the journal, and answers every call. It
// returns false, having changed nothing and answered nobody, when the
// record would not fit in the rest of the file.
func (j *journal) take(db *bolt.DB, guard func(*reader, string, *store.Guard) (bool, error), gens *writeGens, group []*commitCall) bool {
	type linked struct {
		tenant string
		evs    []store.Event
		raw    [][]byte
	}
	var (
		links []linked
		rec   = make([]byte, journalHeader, 1024)
		// staged: this group's new records, seen by its later checks.
		staged createdSet
	)
	heads := map[string]head{}
	// Guards the memo holds and chains with pending events need no read
	// transaction.
	r := &reader{db: db}
	err := func() error {
		defer r.close()
		now := storekit.Now()
		link := func(tenant string, keep []json.RawMessage) ([]store.Event, error) {
			h, ok := heads[tenant]
			if !ok {
				var err error
				if h, err = j.headOf(r, tenant); err != nil {
					return nil, err
				}
			}
			evs := storekit.ChainEvents(tenant, h.Seq, h.Hash, keep, now)
			l := linked{tenant: tenant, evs: evs, raw: make([][]byte, len(evs))}
			for i := range evs {
				b, err := storekit.MarshalEvent(&evs[i])
				if err != nil {
					return nil, err
				}
				l.raw[i] = b
				rec = binary.BigEndian.AppendUint16(rec, uint16(len(tenant)))
				rec = append(rec, tenant...)
				rec = binary.BigEndian.AppendUint32(rec, uint32(len(b)))
				rec = append(rec, b...)
			}
			last := evs[len(evs)-1]
			heads[tenant] = head{Seq: last.Seq, Hash: last.Hash}
			links = append(links, l)
			return evs, nil
		}
		for _, call := range group {
			if c := call.cr; c != nil {
				jc, err := j.check(r, guard, &staged, c, now)
				if err != nil {
					return err
				}
				if jc == nil {
					continue // refused: c.refused says why
				}
				rec = appendCreate(rec, jc)
				staged.add(jc)
				if len(c.event) > 0 {
					if _, err := link(c.rec.Tenant, c.event); err != nil {
						return err
					}
				}
				continue
			}
			a := call.ev
			a.out, a.dropped = []store.Event{}, nil
			keep := make([]json.RawMessage, 0, len(a.norm))
			for i := range a.norm {
				if g := a.guards[i]; g != nil {
					ok, err := guard(r, a.tenant, g)
					if err != nil {
						return err
					}
					if !ok {
						a.dropped = append(a.dropped, i)
						continue
					}
				}
				keep = append(keep, a.norm[i])
			}
			if len(keep) == 0 {
				continue
			}
			evs, err := link(a.tenant, keep)
			if err != nil {
				return err
			}
			a.out = evs
		}
		return nil
	}()
	some := len(links) > 0 || len(staged.list) > 0
	if err == nil && some {
		if j.off+int64(len(rec)) > j.size {
			return false
		}
		binary.BigEndian.PutUint32(rec, uint32(len(rec)-journalHeader))
		binary.BigEndian.PutUint64(rec[8:], j.lsn+1)
		binary.BigEndian.PutUint32(rec[4:], crc32.Checksum(rec[8:], crcTable))
		err = j.write(rec)
	}
	if err == nil && some {
		// A record of a kind is being added: what the memo remembers of
		// that kind is read again (memo.go), as after a bbolt write.
		var touched []*writeGen
		for _, c := range staged.list {
			if g := gens.of(c.rec.Kind); !slices.Contains(touched, g) {
				g.begin()
				touched = append(touched, g)
			}
		}
		j.mu.Lock()
		for _, l := range links {
			j.pending[l.tenant] = append(j.pending[l.tenant], l.evs...)
			j.raw[l.tenant] = append(j.raw[l.tenant], l.raw...)
		}
		for _, c := range staged.list {
			j.created.add(c)
		}
		if j.since.IsZero() {
			j.since = time.Now()
		}
		j.mu.Unlock()
		for _, g := range touched {
			g.end()
		}
		j.off += int64(len(rec))
		j.used.Store(j.off)
		j.lsn++
	}
	for _, call := range group {
		if err != nil {
			if call.ev != nil {
				call.ev.out, call.ev.dropped = nil, nil
			}
		}
		if call.cr != nil {
			call.cr.taken = true
		}
		call.done <- wrap(err)
	}
	return true
}

// write puts rec at the journal's end and syncs it. On failure nothing
// moves: the next record is written at the same place with the same
// sequence number (as with a failed bbolt commit, a record whose sync
// failed may or may not be on the disk).
func (j *journal) write(rec []byte) error {
	if _, err := j.f.WriteAt(rec, j.off); err != nil {
		return fmt.Errorf("event journal: %w", err)
	}
	if err := fdatasync(j.f); err != nil {
		return fmt.Errorf("event journal: %w", err)
	}
	return nil
}

// headOf is the head of tenant's chain: its last pending event, else the
// head bbolt holds.
func (j *journal) headOf(r *reader, tenant string) (head, error) {
	if h, ok := j.pendingHead(tenant); ok {
		return h, nil
	}
	tx, err := r.get()
	if err != nil {
		return head{}, err
	}
	tb, err := tenantBucket(tx, tenant, false)
	if err != nil || tb == nil {
		return head{}, err
	}
	return readHead(tb)
}

// wantsCheckpoint says whether the journal should be copied into bbolt
// soon: a quarter of it is used, it holds checkpointRecords new records,
// or its oldest event waited a second.
func (j *journal) wantsCheckpoint() bool {
	if j.off > j.size/4 {
		return true
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.created.list) >= checkpointRecords || (!j.since.IsZero() && time.Since(j.since) > checkpointAge)
}

// pendingAfter is a copy of tenant's pending events after seq after, at
// most limit of them (all when limit is 0).
func (j *journal) pendingAfter(tenant string, after uint64, limit int) []store.Event {
	j.mu.Lock()
	defer j.mu.Unlock()
	p := j.pending[tenant]
	i, _ := slices.BinarySearchFunc(p, after+1, func(e store.Event, seq uint64) int {
		switch {
		case e.Seq < seq:
			return -1
		case e.Seq > seq:
			return 1
		}
		return 0
	})
	p = p[i:]
	if limit > 0 && len(p) > limit {
		p = p[:limit]
	}
	return slices.Clone(p)
}

// pendingHead is the last of tenant's pending events (ok false if none).
func (j *journal) pendingHead(tenant string) (head, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	p := j.pending[tenant]
	if len(p) == 0 {
		return head{}, false
	}
	return head{Seq: p[len(p)-1].Seq, Hash: p[len(p)-1].Hash}, true
}

// pendingTenants are the tenants with pending events.
func (j *journal) pendingTenants() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]string, 0, len(j.pending))
	for t, evs := range j.pending {
		if len(evs) > 0 {
			out = append(out, t)
		}
	}
	return out
}
