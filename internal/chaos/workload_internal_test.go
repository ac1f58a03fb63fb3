package chaos

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// A 503 is expected while a fault lasts and from a request sent before it
// was over; one sent afterwards is a 5xx while the daemon was up.
func TestA503FromARequestSentDuringAFaultIsExpected(t *testing.T) {
	w := newWorkload("t", nil, false)
	over := time.Now()
	w.faulted.Store(true)
	w.count("key.sign", &Response{Status: http.StatusServiceUnavailable, Began: over.Add(-2 * time.Second)})
	w.faultOver.Store(over.UnixNano())
	w.faulted.Store(false)
	w.count("key.sign", &Response{Status: http.StatusServiceUnavailable, Began: over.Add(-time.Millisecond)})
	assert.Empty(t, w.unexpected)
	assert.Equal(t, 2, w.outage[http.StatusServiceUnavailable])

	w.count("key.sign", &Response{Status: http.StatusServiceUnavailable, Began: over.Add(time.Millisecond)})
	w.count("key.sign", &Response{Status: http.StatusInternalServerError, Began: over.Add(-time.Millisecond)})
	assert.Len(t, w.unexpected, 2, "a 503 sent after the fault, and a 500 at any time")
}
