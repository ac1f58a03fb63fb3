package boltstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
	"github.com/hsmca/hsmca/store/storetest"
)

// The conformance suite with a journal so small that most appends find
// it full (and go through bbolt, copying it first), and without one.
func TestConformanceSmallJournal(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openWith(t, filepath.Join(t.TempDir(), "hsmca.db"), boltstore.Options{JournalSize: 2048})
	})
}

func TestConformanceWithoutJournal(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openWith(t, filepath.Join(t.TempDir(), "hsmca.db"), boltstore.Options{JournalSize: -1})
	})
}

func openWith(t *testing.T, path string, opts boltstore.Options) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(path, opts)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// crashCopy copies the store's file and journal as a crash would leave
// them (a process killed keeps what it wrote) into a new directory.
func crashCopy(t *testing.T, path string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "hsmca.db")
	for _, p := range [][2]string{{path, dst}, {boltstore.JournalPath(path), boltstore.JournalPath(dst)}} {
		b, err := os.ReadFile(p[0])
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(p[1], b, 0o600))
	}
	return dst
}

func event(i int) json.RawMessage { return json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)) }

// checkChain reads tenant's whole chain and checks it links up to its head.
func checkChain(t *testing.T, s *boltstore.Store, tenant string, want int) []store.Event {
	t.Helper()
	ctx := context.Background()
	evs, err := s.ListEvents(ctx, tenant, 0, 0)
	require.NoError(t, err)
	require.Len(t, evs, want)
	_, err = store.VerifyChain(evs, "", 0)
	require.NoError(t, err)
	seq, hash, err := s.EventHead(ctx, tenant)
	require.NoError(t, err)
	assert.Equal(t, uint64(want), seq)
	if want > 0 {
		assert.Equal(t, evs[want-1].Hash, hash)
	}
	return evs
}

// Events acknowledged through the journal alone survive a crash: the
// next open copies them into bbolt, and the chain goes on from them.
func TestJournaledEventsSurviveACrash(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hsmca.db")
	s := openWith(t, path, boltstore.Options{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				_, err := s.AppendEvents(ctx, "t", []json.RawMessage{event(g*100 + i)})
				assert.NoError(t, err)
			}
		}()
	}
	wg.Wait()
	_, err := s.AppendEvents(ctx, "u", []json.RawMessage{event(1), event(2)})
	require.NoError(t, err)
	used, size, copies := s.JournalStats()
	assert.Positive(t, used, "the appends went to the journal")
	assert.Equal(t, int64(boltstore.DefaultJournalSize), size)
	assert.Zero(t, copies)
	before := checkChain(t, s, "t", 200)
	tenants, err := s.EventTenants(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"t", "u"}, tenants)

	c := openWith(t, crashCopy(t, path), boltstore.Options{})
	used, _, copies = c.JournalStats()
	assert.Zero(t, used)
	assert.Equal(t, uint64(1), copies, "the open copied the journal into the file")
	assert.Equal(t, before, checkChain(t, c, "t", 200))
	checkChain(t, c, "u", 2)
	evs, err := c.AppendEvents(ctx, "t", []json.RawMessage{event(999)})
	require.NoError(t, err)
	assert.Equal(t, uint64(201), evs[0].Seq)
	assert.Equal(t, before[199].Hash, evs[0].PrevHash)
	checkChain(t, c, "t", 201)
}

// A journal that fills up is copied into bbolt and written from its
// start again; events and records written through bbolt meanwhile (a
// record with its event) keep one chain, across a crash too.
func TestJournalWrapsAndKeepsOneChain(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hsmca.db")
	s := openWith(t, path, boltstore.Options{JournalSize: 4096})
	n := 0
	for i := range 120 {
		if i%17 == 0 {
			rec := &store.Record{Kind: "k", Tenant: "t", ID: fmt.Sprint("r", i), Data: []byte(`{}`)}
			require.NoError(t, s.Create(ctx, rec, store.WriteOpts{Event: event(i)}))
		} else {
			_, err := s.AppendEvents(ctx, "t", []json.RawMessage{event(i)})
			require.NoError(t, err)
		}
		n++
		if i%10 == 9 {
			checkChain(t, s, "t", n)
		}
	}
	before := checkChain(t, s, "t", n)
	c := openWith(t, crashCopy(t, path), boltstore.Options{JournalSize: 4096})
	assert.Equal(t, before, checkChain(t, c, "t", n))
}

// A record cut short by a crash (never acknowledged: its sync had not
// returned) ends the journal; the events before it are kept.
func TestJournalTornRecordEndsIt(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hsmca.db")
	s := openWith(t, path, boltstore.Options{})
	for i := range 3 {
		_, err := s.AppendEvents(ctx, "t", []json.RawMessage{event(i)})
		require.NoError(t, err)
	}
	before := checkChain(t, s, "t", 3)
	copyPath := crashCopy(t, path)
	j, err := os.ReadFile(boltstore.JournalPath(copyPath))
	require.NoError(t, err)
	// The third record: find its end (the first zero header after it)
	// and cut into its last bytes.
	end := 0
	for off := 0; off+16 <= len(j); {
		n := int(j[off])<<24 | int(j[off+1])<<16 | int(j[off+2])<<8 | int(j[off+3])
		if n == 0 {
			break
		}
		end = off + 16 + n
		off = end
	}
	require.Positive(t, end)
	j[end-2] ^= 0xff
	require.NoError(t, os.WriteFile(boltstore.JournalPath(copyPath), j, 0o600))

	c := openWith(t, copyPath, boltstore.Options{})
	assert.Equal(t, before[:2], checkChain(t, c, "t", 2))
	evs, err := c.AppendEvents(ctx, "t", []json.RawMessage{event(7)})
	require.NoError(t, err)
	assert.Equal(t, uint64(3), evs[0].Seq)
	checkChain(t, c, "t", 3)
	// And again after a clean close: the journal holds nothing new.
	require.NoError(t, c.Close())
	again := openWith(t, copyPath, boltstore.Options{})
	checkChain(t, again, "t", 3)
}

// The copies of the journal into the file that no write of a request
// asked for run as background work: OnBackground's function hears of each
// and its end, after the copy; without one set, nothing is called.
func TestJournalCheckpointsAreBackgroundWork(t *testing.T) {
	ctx := context.Background()
	s := openWith(t, filepath.Join(t.TempDir(), "hsmca.db"), boltstore.Options{JournalSize: 4096})
	var mu sync.Mutex
	started, ended := 0, 0
	endedAfterCopy := true
	s.OnBackground(func() func() {
		mu.Lock()
		started++
		mu.Unlock()
		return func() {
			_, _, copies := s.JournalStats()
			mu.Lock()
			ended++
			endedAfterCopy = endedAfterCopy && copies > 0
			mu.Unlock()
		}
	})
	for i := range 60 {
		_, err := s.AppendEvents(ctx, "t", []json.RawMessage{event(i)})
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return started > 0 && started == ended
	}, 5*time.Second, 10*time.Millisecond)
	mu.Lock()
	assert.True(t, endedAfterCopy, "the end is told after the copy")
	n := started
	mu.Unlock()
	_, _, copies := s.JournalStats()
	assert.GreaterOrEqual(t, copies, uint64(n))

	s.OnBackground(nil)
	for i := range 60 {
		_, err := s.AppendEvents(ctx, "t", []json.RawMessage{event(60 + i)})
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		_, _, c := s.JournalStats()
		return c > copies
	}, 5*time.Second, 10*time.Millisecond)
	mu.Lock()
	assert.Equal(t, n, started, "nothing is called once removed")
	mu.Unlock()
	checkChain(t, s, "t", 120)
}

func certRecord(i int) *store.Record {
	return &store.Record{Kind: "cert", Tenant: "t", ID: fmt.Sprintf("c%03d", i), Unique: []string{fmt.Sprintf("serial:%d", i)},
		Fields: map[string]string{"status": "ISSUED"}, Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
}

var certIndexes = []store.Index{{Kind: "cert", Field: "status"}}

// checkCerts reads n certificates back as a list, a count, their quota and
// their events, in creation order.
func checkCerts(t *testing.T, s *boltstore.Store, n int) {
	t.Helper()
	ctx := context.Background()
	count, err := s.CountRecords(ctx, "cert", "t")
	require.NoError(t, err)
	assert.Equal(t, int64(n), count)
	usage, err := s.QuotaUsage(ctx, "t", "certs")
	require.NoError(t, err)
	assert.Equal(t, int64(n), usage)
	page, err := s.List(ctx, store.Query{Kind: "cert", Tenant: "t", Filters: []store.Filter{{Field: "status", Value: "ISSUED"}},
		OffsetPaging: true})
	require.NoError(t, err)
	require.Len(t, page.Records, n)
	for i, r := range page.Records {
		assert.Equal(t, fmt.Sprintf("c%03d", i), r.ID)
		assert.Equal(t, uint64(i+1), r.Seq)
	}
	checkChain(t, s, "t", n)
}

// A new record goes through the journal alone: its checks see the records
// waiting there, a read of it finds it there, a read of many has them
// copied into bbolt first, and a crash loses none of them.
func TestJournaledRecords(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hsmca.db")
	s := openWith(t, path, boltstore.Options{Indexes: certIndexes})
	quota := &store.Quota{Resource: "certs", Limit: 5}
	for i := range 5 {
		r := certRecord(i)
		require.NoError(t, s.Create(ctx, r, store.WriteOpts{Quota: quota, Event: event(i)}))
		assert.Equal(t, uint64(i+1), r.Seq)
		assert.Equal(t, uint64(1), r.Version)
	}
	used, _, copies := s.JournalStats()
	assert.Positive(t, used, "the records went to the journal")
	assert.Zero(t, copies)

	err := s.Create(ctx, certRecord(0), store.WriteOpts{})
	assert.ErrorIs(t, err, store.ErrExists)
	assert.EqualError(t, err, `store: already exists: cert t/c000`)
	dup := certRecord(7)
	dup.Unique = []string{"serial:3"}
	assert.ErrorIs(t, s.Create(ctx, dup, store.WriteOpts{}), store.ErrExists)
	assert.ErrorIs(t, s.Create(ctx, certRecord(8), store.WriteOpts{Quota: quota}), store.ErrQuotaExceeded)
	assert.ErrorIs(t, s.Create(ctx, certRecord(9), store.WriteOpts{Guard: &store.Guard{Kind: "cert", ID: "c001", Version: 2}}),
		store.ErrVersionConflict, "a guard on a waiting record at another version")

	got, err := s.Get(ctx, "cert", "t", "c003")
	require.NoError(t, err)
	assert.Equal(t, uint64(4), got.Seq)
	assert.Equal(t, "ISSUED", got.Fields["status"])
	assert.JSONEq(t, `{"n":3}`, string(got.Data))
	got, err = s.GetByUnique(ctx, "cert", "t", "serial:2")
	require.NoError(t, err)
	assert.Equal(t, "c002", got.ID)
	held, err := s.CheckGuard(ctx, "t", &store.Guard{Kind: "cert", ID: "c001", Version: 1})
	require.NoError(t, err)
	assert.True(t, held)
	held, err = s.CheckGuard(ctx, "t", &store.Guard{Kind: "cert", ID: "c001", Version: 2})
	require.NoError(t, err)
	assert.False(t, held)
	_, _, copies = s.JournalStats()
	assert.Zero(t, copies, "reads of one record answer from the journal")

	// A crash now: the next open puts them into bbolt.
	c := openWith(t, crashCopy(t, path), boltstore.Options{Indexes: certIndexes})
	checkCerts(t, c, 5)
	r := certRecord(5)
	require.NoError(t, c.Create(ctx, r, store.WriteOpts{}))
	assert.Equal(t, uint64(6), r.Seq, "the sequence goes on from the journal's records")

	// Here a read of many has them copied first.
	checkCerts(t, s, 5)
	_, _, copies = s.JournalStats()
	assert.Equal(t, uint64(1), copies)
	require.NoError(t, s.Create(ctx, certRecord(5), store.WriteOpts{Guard: &store.Guard{Kind: "cert", ID: "c004", Version: 1}}))
	got, err = s.Get(ctx, "cert", "t", "c005")
	require.NoError(t, err)
	assert.Equal(t, uint64(6), got.Seq)
}

// Records created from many goroutines at once, through the journal and
// through bbolt (a checkpoint every so often), get distinct sequence
// numbers in one order, and all of them survive a crash.
func TestJournaledRecordsConcurrently(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hsmca.db")
	s := openWith(t, path, boltstore.Options{Indexes: certIndexes, JournalSize: 64 << 10})
	quota := &store.Quota{Resource: "certs", Limit: -1}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				r := certRecord(g*40 + i)
				assert.NoError(t, s.Create(ctx, r, store.WriteOpts{Quota: quota, Event: event(g*40 + i)}))
				if i%10 == 9 {
					_, err := s.CountRecords(ctx, "cert", "t") // a checkpoint
					assert.NoError(t, err)
				}
			}
		}()
	}
	wg.Wait()
	check := func(s *boltstore.Store) {
		page, err := s.List(ctx, store.Query{Kind: "cert", Tenant: "t", OffsetPaging: true})
		require.NoError(t, err)
		require.Len(t, page.Records, 320)
		seen := map[uint64]bool{}
		for i, r := range page.Records {
			assert.False(t, seen[r.Seq], "sequence number %d twice", r.Seq)
			seen[r.Seq] = true
			if i > 0 {
				assert.Greater(t, r.Seq, page.Records[i-1].Seq)
			}
		}
		n, err := s.QuotaUsage(ctx, "t", "certs")
		require.NoError(t, err)
		assert.Equal(t, int64(320), n)
		checkChain(t, s, "t", 320)
	}
	copied := crashCopy(t, path)
	check(openWith(t, copied, boltstore.Options{Indexes: certIndexes, JournalSize: 64 << 10}))
	check(s)
}
