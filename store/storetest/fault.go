package storetest

import "github.com/hsmca/hsmca/store"

// Failure modes of FailWrite.
const (
	// Refuse: the store refuses the write; nothing is written.
	Refuse = "refuse"
	// LoseBefore: the write fails with an unknown outcome (a timeout);
	// nothing is written.
	LoseBefore = "lose-before"
	// LoseAfter: the write is made but its answer is lost: it fails with
	// an unknown outcome although it committed.
	LoseAfter = "lose-after"
)

// FailWrite answers a write the way a failing store does in mode: Refuse
// returns refused, LoseBefore store.ErrUnavailable without writing,
// LoseAfter store.ErrUnavailable after write succeeded; any other mode
// (empty) runs write. For store wrappers in tests of what callers do with
// each outcome.
func FailWrite(mode string, refused error, write func() error) error {
	switch mode {
	case Refuse:
		return refused
	case LoseBefore:
		return store.ErrUnavailable
	case LoseAfter:
		if err := write(); err != nil {
			return err
		}
		return store.ErrUnavailable
	}
	return write()
}
