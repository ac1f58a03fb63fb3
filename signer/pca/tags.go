package pca

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
)

// Tags on CAs and private certificates, with the rules of Huawei's tag
// management service (TMS) that CCM follows: at most 20 tags a resource,
// one value per key, keys of 1 to 128 characters and values of at most
// 255.
//
// A resource's tags are one record of their own (RecordCATags or
// RecordCertTags, the resource's id as id), written with a version check:
// every change reads the set, applies the request to it and writes it
// back only if nobody changed it meanwhile, so the 20-tag limit holds
// across replicas. A set whose tags are all deleted stays as an empty
// record (deleting it could drop a tag another request adds meanwhile);
// the record goes with its resource: a certificate's deletion and a CA's
// purge remove it. The resource record goes first and its tags after, and
// a tag write re-reads the resource once written, so that a deletion and
// a tag write racing each other leave no tags behind; a crash between the
// two deletions can, and the reads below that depend on it (the tenant's
// keys, the filtered lists) skip and remove such tags.

// Reasons of the tag refusals (api/pca_errors.go maps them).
const (
	ReasonBadTag   signer.Reason = "pca.bad_tag"   // a tag key or value breaks the rules, or a key is given twice
	ReasonTagLimit signer.Reason = "pca.tag_limit" // the resource would hold more than 20 tags
)

// Record kinds of the tag sets.
const (
	RecordCATags   = "pca_ca_tags"
	RecordCertTags = "pca_cert_tags"
)

// Limits of tags (TMS).
const (
	MaxTagsPerResource = 20
	maxTagKeyLen       = 128
	maxTagValueLen     = 255
	// maxFilterValues bounds the values of one key in a filter.
	maxFilterValues = 20
	// reservedTagPrefix starts the system's own keys.
	reservedTagPrefix = "_sys_"
)

// Tag is one tag of a CA or certificate.
type Tag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// TagTarget says which kind of resource a tag operation is about.
type TagTarget int

const (
	TagCAs TagTarget = iota
	TagCertificates
)

// tagTarget is what the tag operations need of a kind of resource.
type tagTarget struct {
	resourceKind string // the resources' record kind
	tagKind      string // their tag sets' record kind
	what         string // its name in messages
	event        string // the events' prefix
}

var tagTargets = map[TagTarget]tagTarget{
	TagCAs:          {resourceKind: RecordCA, tagKind: RecordCATags, what: "CA", event: "PCA_CA_TAG"},
	TagCertificates: {resourceKind: RecordCertificate, tagKind: RecordCertTags, what: "certificate", event: "PCA_CERTIFICATE_TAG"},
}

func targetOf(t TagTarget) tagTarget {
	if tg, ok := tagTargets[t]; ok {
		return tg
	}
	return tagTargets[TagCAs]
}

// tagSet is the stored form of a resource's tags, in the order their
// keys were first set.
type tagSet struct {
	Tags []Tag `json:"tags"`
}

// tagRune says whether r may appear in a tag key (or, with value, in a
// tag value): letters of any script (with their combining marks), digits,
// spaces and _ . : = + - @; values may also hold '/'.
func tagRune(r rune, value bool) bool {
	switch {
	case unicode.IsLetter(r), unicode.IsMark(r), unicode.IsDigit(r), r == ' ':
		return true
	case strings.ContainsRune("_.:=+-@", r):
		return true
	}
	return value && r == '/'
}

func badTag(field, msg string) error {
	return refused(ReasonBadTag, field, nil, msg)
}

// checkTagKey applies the key rules; charset false skips the character
// rules (a deletion names keys as they are, valid or not).
func checkTagKey(field, k string, charset bool) error {
	n := utf8.RuneCountInString(k)
	switch {
	case !utf8.ValidString(k):
		return badTag(field, "must be UTF-8 text")
	case n == 0:
		return badTag(field, "is required")
	case n > maxTagKeyLen:
		return badTag(field, fmt.Sprintf("must be at most %d characters", maxTagKeyLen))
	case !charset:
		return nil
	case k[0] == ' ' || k[len(k)-1] == ' ':
		return badTag(field, "must not start or end with a space")
	case strings.HasPrefix(k, reservedTagPrefix):
		return badTag(field, "must not start with "+reservedTagPrefix+" (reserved for the system)")
	}
	for _, r := range k {
		if !tagRune(r, false) {
			return badTag(field, "may hold letters, digits, spaces and _ . : = + - @ only")
		}
	}
	return nil
}

func checkTagValue(field, v string, charset bool) error {
	switch {
	case !utf8.ValidString(v):
		return badTag(field, "must be UTF-8 text")
	case utf8.RuneCountInString(v) > maxTagValueLen:
		return badTag(field, fmt.Sprintf("must be at most %d characters", maxTagValueLen))
	case !charset:
		return nil
	}
	for _, r := range v {
		if !tagRune(r, true) {
			return badTag(field, "may hold letters, digits, spaces and _ . : / = + - @ only")
		}
	}
	return nil
}

// checkTags checks a request's tags: 1 to 20, each valid, no key twice.
// A deletion (del) checks lengths only, as TMS does.
func checkTags(field string, tags []Tag, del bool) error {
	if len(tags) == 0 {
		return badTag(field, "must hold at least one tag")
	}
	if len(tags) > MaxTagsPerResource {
		return badTag(field, fmt.Sprintf("must hold at most %d tags", MaxTagsPerResource))
	}
	seen := make(map[string]bool, len(tags))
	for i, t := range tags {
		f := fmt.Sprintf("%s[%d]", field, i)
		if err := checkTagKey(f+".key", t.Key, !del); err != nil {
			return err
		}
		if err := checkTagValue(f+".value", t.Value, !del); err != nil {
			return err
		}
		if seen[t.Key] {
			return badTag(f+".key", "names a key given earlier in the request")
		}
		seen[t.Key] = true
	}
	return nil
}

func tagLimitErr(n int) error {
	return &signer.Error{Kind: signer.KindQuotaExceeded, Reason: ReasonTagLimit,
		Msg: fmt.Sprintf("a resource can hold at most %d tags; this request would leave it %d", MaxTagsPerResource, n)}
}

// mergeTags sets each of add on cur: a new key is appended, a known one
// takes the new value in place.
func mergeTags(cur, add []Tag) ([]Tag, error) {
	out := append([]Tag(nil), cur...)
	for _, t := range add {
		i := tagIndex(out, t.Key)
		if i < 0 {
			out = append(out, t)
		} else {
			out[i].Value = t.Value
		}
	}
	if len(out) > MaxTagsPerResource {
		return nil, tagLimitErr(len(out))
	}
	return out, nil
}

// dropTags removes from cur each tag of del by key; one with a value
// goes only when the value is the tag's too. Tags that are not there are
// no error (TMS deletions are idempotent).
func dropTags(cur, del []Tag) []Tag {
	out := make([]Tag, 0, len(cur))
	for _, t := range cur {
		gone := false
		for _, d := range del {
			if d.Key == t.Key && (d.Value == "" || d.Value == t.Value) {
				gone = true
				break
			}
		}
		if !gone {
			out = append(out, t)
		}
	}
	return out
}

func tagIndex(tags []Tag, key string) int {
	for i, t := range tags {
		if t.Key == key {
			return i
		}
	}
	return -1
}

func sameTags(a, b []Tag) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func decodeTags(data []byte) ([]Tag, error) {
	var ts tagSet
	if err := json.Unmarshal(data, &ts); err != nil {
		return nil, err
	}
	return ts.Tags, nil
}

// CreateTag sets one tag on a CA or certificate (a known key takes the
// new value).
func (s *Service) CreateTag(ctx context.Context, tenant string, target TagTarget, id string, t Tag) error {
	tg := targetOf(target)
	op := s.core.Start(ctx, tenant, tg.event+"_CREATE")
	err := checkTags("tag", []Tag{t}, false)
	if err == nil {
		err = s.changeTags(ctx, tenant, tg, id, func(cur []Tag) ([]Tag, error) { return mergeTags(cur, []Tag{t}) })
	}
	return op.Done(id, err)
}

// CreateTags sets up to 20 tags on a CA or certificate at once: all or
// none. Known keys take the new values; the resource may then hold at
// most 20.
func (s *Service) CreateTags(ctx context.Context, tenant string, target TagTarget, id string, tags []Tag) error {
	tg := targetOf(target)
	op := s.core.Start(ctx, tenant, tg.event+"_BATCH_CREATE")
	err := checkTags("tags", tags, false)
	if err == nil {
		err = s.changeTags(ctx, tenant, tg, id, func(cur []Tag) ([]Tag, error) { return mergeTags(cur, tags) })
	}
	return op.Done(id, err)
}

// DeleteTags removes up to 20 tags of a CA or certificate at once, by
// key (and by value too when one is given). Tags it does not hold are
// no error.
func (s *Service) DeleteTags(ctx context.Context, tenant string, target TagTarget, id string, tags []Tag) error {
	tg := targetOf(target)
	op := s.core.Start(ctx, tenant, tg.event+"_BATCH_DELETE")
	err := checkTags("tags", tags, true)
	if err == nil {
		err = s.changeTags(ctx, tenant, tg, id, func(cur []Tag) ([]Tag, error) { return dropTags(cur, tags), nil })
	}
	return op.Done(id, err)
}

// ListTags returns the tags of a CA or certificate (none: an empty list).
func (s *Service) ListTags(ctx context.Context, tenant string, target TagTarget, id string) ([]Tag, error) {
	tg := targetOf(target)
	op := s.core.Start(ctx, tenant, tg.event+"_RETRIEVE")
	tags, err := s.listTags(ctx, tenant, tg, id)
	return tags, op.Done(id, err)
}

func (s *Service) listTags(ctx context.Context, tenant string, tg tagTarget, id string) ([]Tag, error) {
	if err := s.resourceExists(ctx, tenant, tg, id); err != nil {
		return nil, err
	}
	rec, err := s.store.Get(ctx, tg.tagKind, tenant, id)
	if errors.Is(err, store.ErrNotFound) {
		return []Tag{}, nil
	}
	if err != nil {
		return nil, signer.StoreErr(err, "tags")
	}
	tags, err := decodeTags(rec.Data)
	if err != nil {
		return nil, signer.StoreErr(err, "tags")
	}
	if tags == nil {
		tags = []Tag{}
	}
	return tags, nil
}

// resourceExists answers nil when the tenant has the resource, and the
// family's not-found otherwise. A CA whose scheduled deletion is due is
// purged first, as on every access to the tenant's CAs.
func (s *Service) resourceExists(ctx context.Context, tenant string, tg tagTarget, id string) error {
	if tg.resourceKind == RecordCA {
		s.sweepTenant(ctx, tenant)
	}
	_, _, err := getRecordVia(ctx, s, tg.resourceKind, tg.what, tenant, id, func([]byte) (struct{}, error) { return struct{}{}, nil })
	return err
}

// maxTagWriteAttempts bounds the retries of a tag write that keeps
// meeting concurrent writes of the same resource's tags.
const maxTagWriteAttempts = 20

// changeTags applies change to the resource's tags and writes the result
// with a version check, starting over when another write came first.
// Once written, the resource is read again: if it went meanwhile, the
// tags go too and the answer is not-found.
func (s *Service) changeTags(ctx context.Context, tenant string, tg tagTarget, id string, change func([]Tag) ([]Tag, error)) error {
	if err := s.resourceExists(ctx, tenant, tg, id); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		rec, err := s.store.Get(ctx, tg.tagKind, tenant, id)
		var cur []Tag
		switch {
		case errors.Is(err, store.ErrNotFound):
			rec = nil
		case err != nil:
			return signer.StoreErr(err, "tags")
		default:
			if cur, err = decodeTags(rec.Data); err != nil {
				return signer.StoreErr(err, "tags")
			}
		}
		next, err := change(cur)
		if err != nil {
			return err
		}
		if sameTags(cur, next) && (rec != nil || len(next) == 0) {
			return nil // nothing changes
		}
		if next == nil {
			next = []Tag{}
		}
		data, err := json.Marshal(tagSet{Tags: next})
		if err != nil {
			return err
		}
		if rec == nil {
			err = s.store.Create(ctx, &store.Record{Kind: tg.tagKind, Tenant: tenant, ID: id, Data: data}, store.WriteOpts{})
		} else {
			rec.Data = data
			err = s.store.Update(ctx, rec, store.WriteOpts{})
		}
		switch {
		case err == nil:
			return s.recheckResource(ctx, tenant, tg, id)
		case (errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrVersionConflict)) && attempt < maxTagWriteAttempts:
			signer.Backoff(attempt)
			continue
		case errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrVersionConflict):
			return &signer.Error{Kind: signer.KindConflict, Reason: ReasonBusy,
				Msg: "the tags of " + tg.what + " " + id + " are being changed concurrently; retry", Err: err}
		}
		return signer.StoreErr(err, "tags")
	}
}

// recheckResource follows a tag write: when the resource was deleted
// meanwhile, its deletion may have run before the write, so the tags it
// would have removed are removed here.
func (s *Service) recheckResource(ctx context.Context, tenant string, tg tagTarget, id string) error {
	_, err := s.store.Get(ctx, tg.resourceKind, tenant, id)
	if errors.Is(err, store.ErrNotFound) {
		s.forgetTags(ctx, tg.tagKind, tenant, id)
		return notFound(tg.what, id)
	}
	// Any other failure: the tags are written and the resource was there
	// a moment ago; a later read skips them if it is gone.
	return nil
}

// forgetTags removes the tags of a resource that is gone. It is the
// second step of a deletion, whatever became of the request.
func (s *Service) forgetTags(ctx context.Context, tagKind, tenant, id string) {
	_ = s.store.Delete(context.WithoutCancel(ctx), tagKind, tenant, id, store.WriteOpts{})
}
