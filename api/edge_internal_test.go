package api

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestClip(t *testing.T) {
	assert.Equal(t, "short", clip("short", 10))
	long := strings.Repeat("a", 60000)
	got := clip(long, 32)
	assert.Equal(t, strings.Repeat("a", 32)+"...(60000 bytes)", got)
	got = clip(strings.Repeat("é", 20), 5) // 2-byte runes: cut on a boundary
	assert.Equal(t, "éé...(40 bytes)", got)
}
