package wal

import (
	"os"

	"golang.org/x/sys/unix"
)

// fdatasync skips the inode metadata flush that fsync does; the segment's size change is still
// made durable, which is all replay needs.
func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
