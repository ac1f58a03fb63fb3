// Package store defines the metadata store every hsmca daemon replica shares.
//
// Records are opaque JSON documents namespaced by tenant and kind. The store
// knows nothing of CAs or keys; it guarantees the invariants the engine relies
// on: unique ids and unique keys per (tenant, kind), atomic quota
// reservation together with the insert, intent records for crash recovery and
// a hash-chained, append-only event log per tenant.
//
// Two implementations exist: boltstore (embedded, one file, one process) and
// redisstore (shared by replicas). storetest runs one conformance suite on both.
package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"
)

// Sentinel errors. Implementations wrap them; callers test with errors.Is.
var (
	// ErrNotFound: no record with that id or unique key.
	ErrNotFound = errors.New("store: not found")
	// ErrExists: the id or one of the unique keys is already taken.
	ErrExists = errors.New("store: already exists")
	// ErrQuotaExceeded: reserving would take usage above the limit.
	ErrQuotaExceeded = errors.New("store: quota exceeded")
	// ErrVersionConflict: the record changed since it was read.
	ErrVersionConflict = errors.New("store: version conflict")
	// ErrUnavailable: the backend did not answer (network, closed, timeout).
	ErrUnavailable = errors.New("store: unavailable")
	// ErrInvalid: the request itself is malformed (empty id, a kind or
	// tenant with a reserved character, a bad cursor, invalid JSON data).
	ErrInvalid = errors.New("store: invalid request")
)

// PlatformTenant namespaces records that belong to no tenant (admins, tokens).
const PlatformTenant = "_platform"

// Record is one stored document.
//
// Kind and Tenant must be non-empty and free of control characters and of
// ':', '{' and '}' (they become parts of backend keys); ID and unique keys
// must be non-empty. Data must be valid JSON and comes back compacted.
type Record struct {
	Kind   string `json:"kind"`
	Tenant string `json:"tenant"`
	ID     string `json:"id"`
	// Unique holds keys that must be unique within (Tenant, Kind), such as
	// "name:web-01" or "serial:1f". A record can be fetched by any of them.
	Unique []string `json:"unique,omitempty"`
	// Fields are indexed values used by Query filters and sorting. Values
	// that sort must be encoded so that byte order is the wanted order
	// (for numbers: fixed-width, zero-padded).
	Fields map[string]string `json:"fields,omitempty"`
	Data   json.RawMessage   `json:"data"`
	// Set by the store.
	Seq     uint64    `json:"seq"`     // creation order within (Tenant, Kind), starts at 1
	Version uint64    `json:"version"` // 1 on create, +1 on every update
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

// Quota names a counter and its limit. With Create, one unit is reserved in
// the same atomic step as the insert; with Delete, one unit is released
// (never below zero). Update takes no quota. The counter belongs to the
// record's tenant.
type Quota struct {
	Resource string
	Limit    int64 // a negative limit counts without limiting
}

// WriteOpts attach atomic side effects to Create, Update and Delete.
type WriteOpts struct {
	Quota *Quota
	// Intent, when set, is deleted in the same atomic step: committing a
	// resource and retiring the intent that announced it cannot be split by
	// a crash. Only an intent of the record's tenant is deleted (Redis keeps
	// a tenant's intents in the tenant's cluster slot); an absent intent is
	// not an error.
	Intent string
	// Event, with Create on a store that implements EventsWithCreate, is
	// an event record (the engine's JSON, as given to AppendEvents)
	// appended to the chain of the record's tenant in the same atomic step
	// as the insert: the record and the event that records it are durable
	// together or not at all, in one commit. Nothing is appended when the
	// create is refused. Other writes and other stores refuse it
	// (ErrInvalid).
	Event json.RawMessage
	// Guard, with Create, must hold for the create to be written (see
	// Guard); when it does not, nothing is written and Create fails with
	// ErrVersionConflict. Other writes refuse it (ErrInvalid).
	Guard *Guard
}

// EventsWithCreate is implemented by stores whose Create takes
// WriteOpts.Event (bolt: one transaction, one commit for both; Redis: one
// script, one round trip).
type EventsWithCreate interface {
	EventsWithCreate()
}

// EventCreateAlone is implemented by EventsWithCreate stores where a
// Create with an event is not grouped with other appends to the tenant's
// chain: it holds the chain alone for its round trip (Redis), while bolt
// commits it with whatever else is queued. The engine gives such a Create
// its event only while no append of its own is under way, so that a busy
// daemon keeps grouping its records and an idle one saves a round trip.
type EventCreateAlone interface {
	EventCreateAlone()
}

// Guard makes a write conditional on another record of the same tenant:
// the record (Kind, ID) must exist at Version. An operation that acted on
// what it read of a record earlier (a key's state and HSM object, an
// issuing CA's status) writes its result only if that record has not
// changed since, checked in the same atomic step as the write, instead of
// reading the record again before acting. See WriteOpts.Guard and
// GuardedEvents.
type Guard struct {
	Kind    string
	ID      string
	Version uint64

	// The fields below are for AppendEventsIf and Create on a store that
	// takes credential guards (CredentialGuards): the check of the
	// credential of the request whose record is written, made in the
	// same atomic step as the write. Everywhere else they must be empty.

	// Tenant is the guarded record's tenant when it is not the write's.
	Tenant string
	// Throttle, when set, counts one request against this rate limit
	// (as Throttler.Throttle) when the write is made; a request the limit
	// refuses fails the guard, and nothing is counted then.
	Throttle *ThrottleRequest
	// And is another guard that must hold as well.
	And *Guard
}

// CredentialGuards is implemented by stores whose AppendEventsIf and
// Create may take guards with Tenant, Throttle and And (Guard): it reports
// whether this instance does (Redis standalone and Sentinel; not a Redis
// Cluster, whose script cannot reach keys in other slots).
type CredentialGuards interface {
	CredentialGuards() bool
}

// GuardChecker is implemented by stores that check a guard alone, as a
// guarded write would (with Tenant, Throttle and And), without writing:
// GuardChecks reports whether this instance does (Redis standalone and
// Sentinel, bolt; not a Redis Cluster).
type GuardChecker interface {
	GuardChecks() bool
	// CheckGuard checks g and its chain for a write of tenant: held when
	// each guarded record is at its version and each rate limit admits
	// one request (counted then); when a guard fails nothing is counted.
	// An error when this instance checks no guards alone.
	CheckGuard(ctx context.Context, tenant string, g *Guard) (held bool, err error)
}

// GuardedEvents is implemented by stores that append events under
// guards (both backends).
type GuardedEvents interface {
	// AppendEventsIf is AppendEvents where guards[i], when not nil, must
	// hold for data[i] to be appended: the events whose guards fail are
	// left out and listed in dropped (indexes into data); the others are
	// appended in order, atomically with the checks. len(guards) must be
	// len(data).
	AppendEventsIf(ctx context.Context, tenant string, data []json.RawMessage, guards []*Guard) (evs []Event, dropped []int, err error)
}

// Match says how a Filter compares.
type Match int

const (
	Equal    Match = iota // field value equals Value
	Contains              // field value contains Value (case-insensitive)
	Less                  // field value sorts before Value (byte order)
	AtLeast               // field value equals Value or sorts after it (byte order)
)

// Filter selects records on one of their Fields.
type Filter struct {
	Field string
	Value string
	Match Match
}

// Query selects a page of records of one kind in one tenant.
//
// Two paging styles exist. Cursor paging (SortBy empty, Offset 0) walks
// creation order and resumes after NextCursor; Total is then the number of
// records of the kind when there are no filters and -1 otherwise. Offset
// paging (SortBy set or Offset > 0) sorts by SortBy (a Fields key, a missing
// field sorts as ""; ties broken by creation order; empty SortBy means
// creation order) and skips Offset records; Total then counts every match
// and Cursor must be empty. Desc reverses the whole order in both styles;
// a cursor only continues a query with the same Desc. Filters combine with
// AND. A malformed query or cursor gives ErrInvalid.
//
// # Index-served queries
//
// A store opened with Indexes keeps, for each declared (kind, field), an
// index of the kind's records ordered by (field value, seq), maintained in
// the same atomic step as every write. Every answer is the same with or
// without indexes (records are re-checked against the filters after they
// are read); indexes only change what a query costs. A field's filters
// below are its Equal, Less, AtLeast and Contains filters; Equal, Less and
// AtLeast narrow the index range, Contains is checked on the values in the
// index keys. With N the records of the kind:
//
//   - No filters, creation order: the seq index, reads only the page.
//   - SortBy an indexed field, every filter on that field: a walk of its
//     index range; offset steps over keys; reads only the page. Total is
//     the kind's count without filters, else a range count (Redis:
//     ZLEXCOUNT, O(log N); bolt: a walk over the range's keys), or with a
//     Contains filter a walk over the range's keys.
//   - Creation order, filters on one indexed field, all Equal: the page
//     straight from the index (its entries of one value are in seq
//     order), cursor or offset; Total is the value's count (bolt keeps a
//     count per value; Redis: ZLEXCOUNT).
//   - Creation order, filters on one indexed field otherwise (ranges,
//     Contains): the (seq, id) of every key in the range that passes,
//     sorted, then only the page's records: costs the keys in the range.
//   - Creation order, an Equal-only indexed field among filters on several
//     fields, and no Total wanted (cursor paging, or NoTotal): a walk of
//     that field's index in seq order reading records until the page is
//     full: costs the page divided by the share of candidates that match.
//   - Otherwise, when some filtered field is indexed (preferring one with
//     Equal filters, then one with a range): every record whose key passes
//     that field's filters is read and the rest is done in memory: costs
//     the candidates.
//   - Anything else reads every record of the kind.
type Query struct {
	Kind    string
	Tenant  string
	Filters []Filter
	SortBy  string
	Desc    bool
	Offset  int
	Limit   int // 0 means no limit
	Cursor  string
	// OffsetPaging selects offset paging (and a counted Total) with SortBy
	// empty and Offset 0, where cursor paging would be used.
	OffsetPaging bool
	// NoTotal tells offset paging that the caller does not need Total (it
	// is then -1), so that an index-served query need not count matches.
	NoTotal bool
}

// Index declares a secondary index on one field of one kind's records.
// A store opened with an index maintains it with every write and builds it
// at open for records written without it.
type Index struct {
	Kind  string
	Field string
}

// Page is one answer to a Query.
type Page struct {
	Records    []Record
	Total      int    // number of matching records (offset paging); -1 when unknown
	NextCursor string // empty on the last page
}

// Intent announces an HSM object about to be created. The reconciler
// destroys the objects of intents that never committed. IDs are unique
// across tenants (PutIntent with a known ID replaces that intent); Tenant is
// required (PlatformTenant for tenant-less resources).
type Intent struct {
	ID      string          `json:"id"`
	Tenant  string          `json:"tenant"`
	Kind    string          `json:"kind"`
	KeyIDs  []string        `json:"keyIds"` // hex CKA_IDs the operation may create
	Created time.Time       `json:"created"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// Event is one link of a tenant's event chain. Data is the engine's JSON,
// stored in the form encoding/json re-encodes it to (compacted, HTML
// characters escaped) so that the hash survives any JSON round trip; Seq,
// Time (UTC), PrevHash and Hash are assigned by the store on append.
type Event struct {
	Tenant   string          `json:"tenant"`
	Seq      uint64          `json:"seq"` // starts at 1
	Time     time.Time       `json:"time"`
	PrevHash string          `json:"prevHash"`
	Hash     string          `json:"hash"`
	Data     json.RawMessage `json:"data"`
}

// Store is the metadata store.
type Store interface {
	// Backend names the implementation ("bolt", "redis").
	Backend() string
	// Ping answers nil when the backend can serve requests.
	Ping(ctx context.Context) error
	Close() error

	// Create inserts a new record. It fails with ErrExists when the id or a
	// unique key is taken and with ErrQuotaExceeded when opts.Quota is full;
	// in both cases nothing is written. On success rec holds Seq, Version,
	// Created and Updated as stored.
	Create(ctx context.Context, rec *Record, opts WriteOpts) error
	Get(ctx context.Context, kind, tenant, id string) (*Record, error)
	GetByUnique(ctx context.Context, kind, tenant, key string) (*Record, error)
	// Update replaces a record whose Version equals rec.Version (else
	// ErrVersionConflict) and bumps the version. Unique keys may change; a
	// taken one gives ErrExists. Seq and Created are kept; on success rec
	// holds the stored values.
	Update(ctx context.Context, rec *Record, opts WriteOpts) error
	// Delete removes a record, releasing one unit of opts.Quota if set.
	Delete(ctx context.Context, kind, tenant, id string, opts WriteOpts) error
	List(ctx context.Context, q Query) (*Page, error)

	// ReserveQuota adds n (>= 0) to a counter if the result stays within
	// limit (a negative limit never refuses).
	ReserveQuota(ctx context.Context, tenant, resource string, n, limit int64) error
	// ReleaseQuota subtracts n, never below zero.
	ReleaseQuota(ctx context.Context, tenant, resource string, n int64) error
	QuotaUsage(ctx context.Context, tenant, resource string) (int64, error)
	// SetQuotaUsage overwrites a counter (the reconciler's repair).
	SetQuotaUsage(ctx context.Context, tenant, resource string, n int64) error
	// CountRecords counts the records of a kind in a tenant.
	CountRecords(ctx context.Context, kind, tenant string) (int64, error)

	PutIntent(ctx context.Context, in *Intent) error
	DeleteIntent(ctx context.Context, id string) error
	ListIntents(ctx context.Context) ([]Intent, error)

	// AppendEvents appends to a tenant's chain atomically, in order, and
	// returns the events as stored.
	AppendEvents(ctx context.Context, tenant string, data []json.RawMessage) ([]Event, error)
	// ListEvents returns up to limit events with Seq > afterSeq, oldest
	// first; limit 0 means all.
	ListEvents(ctx context.Context, tenant string, afterSeq uint64, limit int) ([]Event, error)
	// Tenants lists the tenants that have at least one event.
	EventTenants(ctx context.Context) ([]string, error)

	// Throttle counts one request against key's rate limit: a generic cell
	// rate of rate requests per second that admits bursts of up to burst
	// at once. It answers 0 when the request is admitted and otherwise how
	// long until one would be (the refused request is not counted). Every
	// replica sharing the store shares the limit. rate > 0 and burst >= 1,
	// else ErrInvalid. Keys are not tenant-scoped.
	Throttle(ctx context.Context, key string, rate float64, burst int64) (time.Duration, error)

	// GetByUniqueThrottled is GetByUnique and Throttle together, for the
	// credential check every request makes: the Redis backend answers both
	// in one round trip. The request is counted against t.Key whether or
	// not the record exists. The error is GetByUnique's; the limiter's
	// answer or failure is in the ThrottleResult.
	GetByUniqueThrottled(ctx context.Context, kind, tenant, key string, t ThrottleRequest) (*Record, ThrottleResult, error)
}

// ThrottleRequest names a rate limit to count one request against (see
// Store.Throttle).
type ThrottleRequest struct {
	Key   string
	Rate  float64
	Burst int64
}

// ThrottleResult is a limiter's answer: Wait 0 admits the request; Err
// says the limiter could not answer.
type ThrottleResult struct {
	Wait time.Duration
	Err  error
}

// CheckThrottle validates Throttle's arguments for the backends.
func CheckThrottle(key string, rate float64, burst int64) error {
	if key == "" || !(rate > 0) || rate > 1e6 || burst < 1 || burst > 1e6 {
		return ErrInvalid
	}
	return nil
}

// ChainHash is the hash of one event link: SHA-256 over the previous hash,
// the sequence number, the time and the data. Both backends and the verifier
// use this function.
func ChainHash(prevHash string, seq uint64, t time.Time, data []byte) string {
	h := sha256.New()
	h.Write([]byte(prevHash))
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], seq)
	binary.BigEndian.PutUint64(b[8:], uint64(t.UnixNano()))
	h.Write(b[:])
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))
}

// BreakKind says how an event chain is broken.
type BreakKind uint8

const (
	// BreakGap: the next sequence number is missing (a deletion, or
	// records out of order).
	BreakGap BreakKind = iota + 1
	// BreakLink: a record's previous-hash does not name its predecessor.
	BreakLink
	// BreakHash: a record's hash does not match its content.
	BreakHash
)

// ChainBreak is VerifyChain's verdict on a broken chain: the first record
// that does not hold and how it fails.
type ChainBreak struct {
	Seq  uint64
	Kind BreakKind
}

func (b *ChainBreak) Error() string {
	switch b.Kind {
	case BreakGap:
		return "sequence gap: a record is missing"
	case BreakLink:
		return "previous-hash link does not match"
	case BreakHash:
		return "record hash does not match its content"
	}
	return "event chain broken"
}

// VerifyChain checks a tenant's events in order and returns the sequence
// number of the first broken link (0 when the chain holds). A gap in the
// sequence, an edited record and a wrong back-link each break it; the
// error is then a *ChainBreak.
func VerifyChain(events []Event, prevHash string, prevSeq uint64) (uint64, error) {
	for _, e := range events {
		if e.Seq != prevSeq+1 {
			return prevSeq + 1, &ChainBreak{Seq: prevSeq + 1, Kind: BreakGap}
		}
		if e.PrevHash != prevHash {
			return e.Seq, &ChainBreak{Seq: e.Seq, Kind: BreakLink}
		}
		if ChainHash(e.PrevHash, e.Seq, e.Time, e.Data) != e.Hash {
			return e.Seq, &ChainBreak{Seq: e.Seq, Kind: BreakHash}
		}
		prevHash, prevSeq = e.Hash, e.Seq
	}
	return 0, nil
}
