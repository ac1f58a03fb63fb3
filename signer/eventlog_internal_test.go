package signer

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/store/boltstore"
)

// TestQueryEventsScanBudget: a filter matching a rare event in a log
// longer than the scan budget answers in several bounded pages, each with
// a cursor, and finds the event exactly once.
func TestQueryEventsScanBudget(t *testing.T) {
	old := eventScanBudget
	eventScanBudget = 7
	t.Cleanup(func() { eventScanBudget = old })
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{})
	require.NoError(t, err)
	e := New(Options{Store: st})
	t.Cleanup(func() { e.Close(); st.Close() })
	ctx := context.Background()
	for i := range 30 {
		name := "NOISE"
		if i == 24 {
			name = "RARE"
		}
		require.NoError(t, e.Start(ctx, "acme", name).Done(fmt.Sprint(i), nil))
	}
	var found []StoredEvent
	cursor, pages := "", 0
	for {
		pages++
		require.Less(t, pages, 20)
		p, err := e.QueryEvents(ctx, "acme", EventQuery{Operation: "RARE", Limit: 10, Cursor: cursor})
		require.NoError(t, err)
		found = append(found, p.Events...)
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
	}
	require.Len(t, found, 1)
	assert.Equal(t, uint64(25), found[0].Seq)
	assert.Equal(t, 5, pages, "30 records, 7 per page")

	// Unfiltered pages of exactly the log's length end without a cursor.
	p, err := e.QueryEvents(ctx, "acme", EventQuery{Limit: 30})
	require.NoError(t, err)
	assert.Len(t, p.Events, 30)
	assert.Empty(t, p.NextCursor)
	p, err = e.QueryEvents(ctx, "acme", EventQuery{Limit: 29})
	require.NoError(t, err)
	assert.Equal(t, "29", p.NextCursor)
}
