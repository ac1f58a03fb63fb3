package chaos

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// failNotes is a test that keeps its failure messages, to repeat them
// after the long logs a failed chaos test prints (the daemon's errors,
// every Redis node's log): the reason stays at the end of the output,
// where a CI log's tail shows it.
type failNotes struct {
	testing.TB
	mu    sync.Mutex
	notes []string
}

// keepFailures wraps t; once the test ends failed, its failure messages
// are logged again after every cleanup registered later.
func keepFailures(t testing.TB) *failNotes {
	f := &failNotes{TB: t}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.notes) == 0 {
			t.Logf("%s failed (see above)", t.Name())
			return
		}
		t.Logf("%s failed:\n  - %s", t.Name(), strings.Join(f.notes, "\n  - "))
	})
	return f
}

func (f *failNotes) note(s string) {
	const max = 2000
	if len(s) > max {
		s = s[:max] + "..."
	}
	f.mu.Lock()
	f.notes = append(f.notes, s)
	f.mu.Unlock()
}

func (f *failNotes) Error(args ...any) {
	f.TB.Helper()
	f.note(fmt.Sprint(args...))
	f.TB.Error(args...)
}

func (f *failNotes) Errorf(format string, args ...any) {
	f.TB.Helper()
	f.note(fmt.Sprintf(format, args...))
	f.TB.Errorf(format, args...)
}

func (f *failNotes) Fatal(args ...any) {
	f.TB.Helper()
	f.note(fmt.Sprint(args...))
	f.TB.Fatal(args...)
}

func (f *failNotes) Fatalf(format string, args ...any) {
	f.TB.Helper()
	f.note(fmt.Sprintf(format, args...))
	f.TB.Fatalf(format, args...)
}

func TestFailNotesRepeatsFailuresLast(t *testing.T) {
	inner := &recordTB{TB: t}
	f := &failNotes{TB: inner}
	f.Errorf("quota %s off by %d", "keys", 2)
	f.Error("a 500 during a failover")
	if got := strings.Join(f.notes, "|"); got != "quota keys off by 2|a 500 during a failover" {
		t.Fatalf("notes %q", got)
	}
	if got := strings.Join(inner.errs, "|"); got != "quota keys off by 2|a 500 during a failover" {
		t.Fatalf("the wrapped test saw %q", got)
	}
}

// recordTB takes a test's errors without failing it.
type recordTB struct {
	testing.TB
	errs []string
}

func (r *recordTB) Helper() {}
func (r *recordTB) Error(args ...any) {
	r.errs = append(r.errs, fmt.Sprint(args...))
}
func (r *recordTB) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
