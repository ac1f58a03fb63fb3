package bench

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestBenchOpsSelectRows(t *testing.T) {
	all := Config{}
	some := Config{Ops: []string{"sign", "list"}}
	for op, want := range map[string]bool{
		OpSign: true, OpIssue: false, OpIssue + " @100k stored": false, OpShow: false, OpOCSP: false,
		OpList: true, OpList + " @100k stored": true, OpListRevoked + " @100k stored": true,
	} {
		assert.True(t, all.measures(op), op)
		assert.Equal(t, want, some.measures(op), op)
	}
}

// A phase with Idle waits before each operation and leaves the wait out of
// the operation's time: 200 ms with 50 ms of idling before each holds at
// most 4 operations, each timed alone.
func TestMeasureIdlesUntimed(t *testing.T) {
	p := Phase{Duration: 200 * time.Millisecond, Idle: 50 * time.Millisecond}
	r := measure(context.Background(), 1, p, func(context.Context, int) error { return nil }, nil)
	assert.LessOrEqual(t, r.Ops, 4)
	assert.Positive(t, r.Ops)
	assert.Less(t, r.P50, p.Idle, "the idle gap is not timed")
}
