package signer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/hsmca/hsmca/store"
)

// The export format of the event log.
//
// One record per line, a JSON object with the members tenant, seq, time,
// prevHash, hash and data, data last. data is the record's content as
// stored: the exact bytes the chain hash covers, so a reader must take
// them as they stand (everything after the first `"data":` up to the
// line's closing brace), not re-encode them. A record's hash is the hex
// SHA-256 of prevHash (its hex text), seq as 8 bytes big-endian, time as
// Unix nanoseconds in 8 bytes big-endian, then the data bytes
// (store.ChainHash); prevHash is the hash of the tenant's previous record,
// "" before the first. Sinks deliver at least once: a record may come
// twice, with the same hash.

// ExportLine is the export form of one stored record, without the line
// feed.
func ExportLine(ev store.Event) ([]byte, error) {
	ev.Time = ev.Time.UTC()
	return json.Marshal(ev)
}

// ExportReport is the verdict on an exported copy of event chains.
type ExportReport struct {
	Tenants []ExportTenant
	// Duplicates counts records that came again with the same hash
	// (at-least-once delivery).
	Duplicates int
	// Unreadable counts lines that are no record (such as one cut short
	// by a crash of the writer; the record follows whole). A record lost
	// this way shows as missing.
	Unreadable int
}

// ExportTenant is the verdict on one tenant's records in an export.
type ExportTenant struct {
	Tenant    string
	First     uint64 // sequence number of the first record
	Last      uint64 // and of the last one read in order
	Records   int
	LastHash  string
	Broken    bool
	BrokenSeq uint64
	Problem   string
	// Checkpoints are the checkpoints of the tenant whose sequence number
	// the export holds and that match it.
	Checkpoints int
}

// ExportChecker checks exported records as they come, tenant by tenant,
// against their chain links and the checkpoints it was given.
type ExportChecker struct {
	cps     map[string]map[uint64]string // tenant -> seq -> hash
	tenants map[string]*ExportTenant
	recent  map[string]map[uint64]string // tenant -> seq -> hash of the last recentMax records
	dups    int
}

// recentMax is how far back a record sent again is compared with the
// first copy.
const recentMax = 4096

// NewExportChecker checks records against cps (already verified).
func NewExportChecker(cps []Checkpoint) *ExportChecker {
	x := &ExportChecker{cps: map[string]map[uint64]string{}, tenants: map[string]*ExportTenant{},
		recent: map[string]map[uint64]string{}}
	for _, cp := range cps {
		if x.cps[cp.Tenant] == nil {
			x.cps[cp.Tenant] = map[uint64]string{}
		}
		x.cps[cp.Tenant][cp.Seq] = cp.Hash
	}
	return x
}

// Add checks the next record. A record that continues its tenant's chain
// must be the next sequence number, link to the previous hash and hash
// to its own hash; the first record of a tenant is taken as the start
// (an export from a sequence number); a record already seen with the
// same hash is a duplicate.
func (x *ExportChecker) Add(ev store.Event) {
	t := x.tenants[ev.Tenant]
	if t == nil {
		t = &ExportTenant{Tenant: ev.Tenant}
		x.tenants[ev.Tenant] = t
	}
	if t.Broken {
		return
	}
	fail := func(seq uint64, msg string, args ...any) {
		t.Broken, t.BrokenSeq, t.Problem = true, seq, fmt.Sprintf(msg, args...)
	}
	if t.Records > 0 && ev.Seq <= t.Last {
		// At-least-once: a record sent again must be the same record.
		if h, ok := x.recent[ev.Tenant][ev.Seq]; ok && h != ev.Hash {
			fail(ev.Seq, "record %d came twice with different hashes", ev.Seq)
			return
		}
		x.dups++
		return
	}
	if store.ChainHash(ev.PrevHash, ev.Seq, ev.Time, ev.Data) != ev.Hash {
		fail(ev.Seq, "record %d was edited: its hash does not match its content", ev.Seq)
		return
	}
	if t.Records > 0 {
		switch {
		case ev.Seq != t.Last+1:
			fail(t.Last+1, "record %d is missing (the next one is %d)", t.Last+1, ev.Seq)
			return
		case ev.PrevHash != t.LastHash:
			fail(ev.Seq, "record %d does not link to record %d", ev.Seq, t.Last)
			return
		}
	} else {
		t.First = ev.Seq
		if ev.Seq == 1 && ev.PrevHash != "" {
			fail(1, "record 1 links to a predecessor")
			return
		}
	}
	if want, ok := x.cps[ev.Tenant][ev.Seq]; ok {
		if want != ev.Hash {
			fail(ev.Seq, "record %d contradicts the checkpoint at %d: the chain was rewritten at or before it", ev.Seq, ev.Seq)
			return
		}
		t.Checkpoints++
	}
	t.Records++
	t.Last, t.LastHash = ev.Seq, ev.Hash
	rc := x.recent[ev.Tenant]
	if rc == nil {
		rc = map[uint64]string{}
		x.recent[ev.Tenant] = rc
	}
	rc[ev.Seq] = ev.Hash
	if ev.Seq > recentMax {
		delete(rc, ev.Seq-recentMax)
	}
}

// Report returns the verdict so far, tenants by name. A checkpoint whose
// sequence number lies within a tenant's exported records but that no
// record matched cannot happen (Add fails at it); one beyond the last
// record is reported as not reached.
func (x *ExportChecker) Report() *ExportReport {
	rep := &ExportReport{Duplicates: x.dups}
	names := make([]string, 0, len(x.tenants))
	for n := range x.tenants {
		names = append(names, n)
	}
	for n := range x.cps {
		if x.tenants[n] == nil {
			names = append(names, n)
			x.tenants[n] = &ExportTenant{Tenant: n}
		}
	}
	sort.Strings(names)
	for _, n := range names {
		t := *x.tenants[n]
		if !t.Broken {
			var beyond []uint64
			for seq := range x.cps[n] {
				if t.Records == 0 || seq > t.Last {
					beyond = append(beyond, seq)
				}
			}
			if len(beyond) > 0 {
				sort.Slice(beyond, func(i, j int) bool { return beyond[i] < beyond[j] })
				t.Broken, t.BrokenSeq = true, t.Last+1
				t.Problem = fmt.Sprintf("the export ends at record %d, before the checkpoint at %d: the newest records are missing", t.Last, beyond[0])
			}
		}
		rep.Tenants = append(rep.Tenants, t)
	}
	return rep
}

// ReadExport checks an export read from r (JSON lines; empty lines are
// skipped, lines that are no record counted) with the checkpoints given.
func ReadExport(r io.Reader, cps []Checkpoint) (*ExportReport, error) {
	x := NewExportChecker(cps)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	bad := 0
	for sc.Scan() {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var ev store.Event
		if err := json.Unmarshal(b, &ev); err != nil || ev.Tenant == "" || ev.Seq == 0 {
			bad++
			continue
		}
		x.Add(ev)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	rep := x.Report()
	rep.Unreadable = bad
	return rep, nil
}

// ErrNoCheckpoint: a checkpoint file holds no checkpoint.
var ErrNoCheckpoint = errors.New("no checkpoint")

// ParseCheckpoints reads one checkpoint (a JSON object) or several (a
// JSON array, or one object per line).
func ParseCheckpoints(raw []byte) ([]Checkpoint, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, ErrNoCheckpoint
	}
	if raw[0] == '[' {
		var cps []Checkpoint
		if err := json.Unmarshal(raw, &cps); err != nil {
			return nil, err
		}
		return cps, nil
	}
	var out []Checkpoint
	dec := json.NewDecoder(bytes.NewReader(raw))
	for {
		var cp Checkpoint
		err := dec.Decode(&cp)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		out = append(out, cp)
	}
	return out, nil
}

// CheckpointVerdict is the verdict on a store's chain of one tenant
// against the checkpoints of that tenant.
type CheckpointVerdict struct {
	Tenant      string
	Checkpoints int    // checkpoints of the tenant checked
	Held        uint64 // sequence number of the newest checkpoint that holds (0: none)
	Broken      bool
	BrokenSeq   uint64 // the first record that contradicts a checkpoint or breaks the chain
	Problem     string
	Chain       *ChainReport
}

// VerifyCheckpoints checks that the chain of each checkpoint's tenant in
// st is intact and extends the checkpoint: it holds the record at the
// checkpoint's sequence number with the checkpoint's hash. The
// checkpoints' signatures are the caller's to check first
// (VerifyCheckpoint). Verdicts come by tenant name.
func VerifyCheckpoints(ctx context.Context, st store.Store, cps []Checkpoint) ([]CheckpointVerdict, error) {
	byTenant := map[string][]Checkpoint{}
	for _, cp := range cps {
		byTenant[cp.Tenant] = append(byTenant[cp.Tenant], cp)
	}
	names := make([]string, 0, len(byTenant))
	for n := range byTenant {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []CheckpointVerdict
	for _, n := range names {
		list := byTenant[n]
		sort.Slice(list, func(i, j int) bool { return list[i].Seq < list[j].Seq })
		v := CheckpointVerdict{Tenant: n, Checkpoints: len(list)}
		for _, cp := range list {
			if cp.Seq == 0 {
				continue // the head of an empty chain: nothing to hold
			}
			evs, err := st.ListEvents(ctx, n, cp.Seq-1, 1)
			if err != nil {
				return out, fmt.Errorf("read the event chain of %s: %w", n, err)
			}
			switch {
			case len(evs) == 0 || evs[0].Seq != cp.Seq:
				v.Broken, v.BrokenSeq = true, cp.Seq
				v.Problem = fmt.Sprintf("record %d, signed by the checkpoint of %s, is missing: the chain was cut or reordered", cp.Seq, cp.Time.Format(time.RFC3339))
			case evs[0].Hash != cp.Hash:
				v.Broken, v.BrokenSeq = true, cp.Seq
				v.Problem = fmt.Sprintf("record %d contradicts the checkpoint of %s: the chain was rewritten after record %d and at or before record %d",
					cp.Seq, cp.Time.Format(time.RFC3339), v.Held, cp.Seq)
			default:
				v.Held = cp.Seq
				continue
			}
			break
		}
		rep, err := VerifyEventChain(ctx, st, n)
		if err != nil {
			return out, err
		}
		v.Chain = rep
		if rep.Broken && (!v.Broken || rep.BrokenSeq < v.BrokenSeq) {
			v.Broken, v.BrokenSeq, v.Problem = true, rep.BrokenSeq, rep.Problem
		}
		out = append(out, v)
	}
	return out, nil
}
