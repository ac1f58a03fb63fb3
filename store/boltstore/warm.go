package boltstore

import (
	"encoding/binary"
	"io"
	"os"
)

// The store opens bbolt without writing its free-page list with each
// commit (NoFreelistSync), and Close writes the list with its last
// commit. An open after a clean stop reads the list; an open after a crash
// or a kill finds the file naming none, and bbolt finds the free pages by
// reading a page header of every page its trees reach. On a cold page
// cache (after a reboot) those reads come one page at a time: 30-63 s
// for a file of 2.7 GiB here, against 4 s to read the same file from
// start to end. So when the file names no list, Open reads it from start
// to end first (when it fits in half the memory available and no other
// process holds it), and bbolt's walk then finds every page in the cache.

// pgidNoFreelist is what bbolt's meta page holds in place of the page
// of its free-page list when none was written.
const pgidNoFreelist = ^uint64(0)

// boltMagic opens each of bbolt's meta pages, after the page header.
const boltMagic = 0xED0CDAED

// newestFreelist is the free-list page id the newest meta page of the
// bbolt file at path names; ok is false when the file cannot be read or
// is not bbolt's.
func newestFreelist(path string) (pgid uint64, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	// A meta page: a page header (16 bytes), then magic, version, page
	// size, flags (4 bytes each), the root bucket (16), the freelist's
	// page id, the high-water page id and the transaction id (8 each).
	head := make([]byte, 80)
	if _, err := io.ReadFull(f, head); err != nil || binary.LittleEndian.Uint32(head[16:]) != boltMagic {
		return 0, false
	}
	newest := head
	if pageSize := int64(binary.LittleEndian.Uint32(head[24:])); pageSize >= 512 {
		other := make([]byte, 80)
		if _, err := f.ReadAt(other, pageSize); err == nil && binary.LittleEndian.Uint32(other[16:]) == boltMagic &&
			binary.LittleEndian.Uint64(other[64:]) > binary.LittleEndian.Uint64(head[64:]) {
			newest = other
		}
	}
	return binary.LittleEndian.Uint64(newest[48:]), true
}

// namesNoFreelist reports whether the newest meta page of the bbolt file
// at path names no free-page list. Only a hint for Open: any doubt (a
// file too short, no magic) answers false.
func namesNoFreelist(path string) bool {
	pgid, ok := newestFreelist(path)
	return ok && pgid == pgidNoFreelist
}

// FreelistWritten reports whether the newest meta page of the bbolt file
// at path names a free-page list: the store's last stop was clean (or the
// file was last written by a build that writes the list with every
// commit).
func FreelistWritten(path string) bool {
	pgid, ok := newestFreelist(path)
	return ok && pgid != pgidNoFreelist
}

// warmMinSize is the smallest file read ahead of the walk: below it the
// walk costs little even on a cold cache.
var warmMinSize int64 = 32 << 20

// readAhead reads the file at path from start to end, so that its pages
// are in the page cache, when it names no free-page list, is at least
// warmMinSize and at most half of the memory available (known on Linux
// only). It reports the bytes read.
func readAhead(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil || fi.Size() < warmMinSize || !namesNoFreelist(path) {
		return 0
	}
	if avail := memAvailable(); avail <= 0 || fi.Size() > avail/2 {
		return 0
	}
	if lockedElsewhere(path) {
		// A running daemon holds the file (it never names a list while
		// open): this open is refused, with nothing to warm.
		return 0
	}
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n, _ := io.CopyBuffer(io.Discard, f, make([]byte, 4<<20))
	return n
}
