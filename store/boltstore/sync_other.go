//go:build !linux

package boltstore

import "os"

func fdatasync(f *os.File) error { return f.Sync() }

// memAvailable is unknown here: Open does not read the file ahead.
func memAvailable() int64 { return 0 }

// lockedElsewhere is not probed here (no read-ahead without memAvailable).
func lockedElsewhere(string) bool { return false }
