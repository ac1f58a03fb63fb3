package signer

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestOptionsNowIsTheClock(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	e := New(Options{Now: func() time.Time { return at }})
	t.Cleanup(func() { e.Close() })
	assert.Equal(t, at, e.Now())
	assert.Equal(t, at, e.now(), "the family files' clock too")

	d := New(Options{})
	t.Cleanup(func() { d.Close() })
	assert.WithinDuration(t, time.Now(), d.Now(), time.Minute)
}
