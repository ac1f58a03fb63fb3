package bench

import (
	"testing"

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
