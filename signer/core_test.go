package signer_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
)

func TestErrorReasons(t *testing.T) {
	const reasonBadName signer.Reason = "test.bad_name"

	e := signer.Refused(signer.KindInvalid, reasonBadName, "name", "x y", "must be one word")
	assert.Equal(t, signer.KindInvalid, e.Kind)
	assert.Equal(t, "name: must be one word", e.Msg)
	assert.Equal(t, []signer.FieldError{{Field: "name", Value: "x y", Msg: "must be one word", Location: "body"}}, e.Fields)
	assert.Equal(t, reasonBadName, signer.ReasonOf(fmt.Errorf("wrapped: %w", e)))

	e = signer.Refused(signer.KindWrongState, reasonBadName, "", nil, "not now")
	assert.Equal(t, "not now", e.Msg)
	assert.Empty(t, e.Fields)

	w := signer.E(signer.KindConflict, "name %q taken", "a").With(reasonBadName)
	assert.Equal(t, reasonBadName, w.Reason)
	assert.Equal(t, `name "a" taken`, w.Msg)
	assert.Nil(t, (*signer.Error)(nil).With(reasonBadName))
	assert.Empty(t, signer.ReasonOf(errors.New("plain")))
	assert.Empty(t, signer.ReasonOf(nil))

	q := signer.QueryInvalid("limit", 0, "must be positive")
	assert.Equal(t, "query", q.Fields[0].Location)

	var f signer.FieldErrors
	assert.NoError(t, f.Err())
	f.Add("a", 1, "bad")
	f.Add("b", 2, "worse")
	fe := signer.AsError(f.Err())
	assert.Equal(t, signer.KindInvalid, fe.Kind)
	assert.Equal(t, "a: bad; b: worse", fe.Msg)
	assert.Len(t, fe.Fields, 2)

	assert.NoError(t, signer.StoreErr(nil, "CA"))
	for err, kind := range map[error]signer.Kind{
		store.ErrNotFound: signer.KindNotFound, store.ErrExists: signer.KindConflict,
		store.ErrQuotaExceeded: signer.KindQuotaExceeded, store.ErrVersionConflict: signer.KindConflict,
		store.ErrInvalid: signer.KindInvalid, store.ErrUnavailable: signer.KindUnavailable,
		context.DeadlineExceeded: signer.KindUnavailable, errors.New("disk on fire"): signer.KindInternal,
	} {
		assert.Equal(t, kind, signer.KindOf(signer.StoreErr(err, "CA")), "%v", err)
	}
	assert.Equal(t, "CA not found", signer.AsError(signer.StoreErr(store.ErrNotFound, "CA")).Msg)

	assert.Equal(t, "abc", signer.ShortID("abc"))
	assert.Equal(t, `"a b"`, signer.ShortID("a b"))
	assert.Equal(t, `"abc"`, signer.QuoteID("abc"))
}
