package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/ariadne-tracing/ariadne/internal/storage/vfs"
)

// ReplayOptions configure ReplayWith.
type ReplayOptions struct {
	FS     vfs.FS // default vfs.OS
	Logger *slog.Logger
	// QuarantineDir receives a copy of every damaged segment (and of every cut-off tail) before
	// replay changes anything (default: "quarantine" inside the WAL directory).
	QuarantineDir string
}

// ReplayStats say what replay found.
type ReplayStats struct {
	Segments int
	Records  int64
	// LostRecords is the number of records lost to damage in the middle of a segment, exactly:
	// the difference between the indexes of the intact records either side of it.
	LostRecords int64
	// LostBytes is every byte replay could not use: damaged regions and cut-off tails.
	LostBytes int64
	// Damaged counts segments with damage before an intact record (resynchronised past).
	Damaged int
	// TornTails counts segments that ended in an incomplete or damaged write, which was cut off.
	// A crash or a failed write leaves one; it holds only records that were never acknowledged,
	// unless the disk itself damaged the last record of a segment.
	TornTails int
	// Quarantined lists the copies made of damaged segments and cut-off tails.
	Quarantined []string
}

// Replay is ReplayWith on the real filesystem, for callers that need no statistics.
func Replay(dir string, log *slog.Logger, fn func(seq uint64, payload []byte) error) error {
	_, err := ReplayWith(dir, ReplayOptions{Logger: log}, fn)
	return err
}

// ReplayWith reads every intact record of every segment in dir, oldest first, and calls fn with
// the segment's sequence number and the payload (valid only during the call).
//
// Damage does not end a segment: replay looks for the next record whose magic, length and
// checksum hold and carries on there, so one flipped byte loses one record, not the rest of the
// segment. The damaged segment is copied to the quarantine folder first, and what was lost is
// logged and counted. A damaged or incomplete tail (the last write before a crash, or one that
// failed) is copied to quarantine and cut off.
func ReplayWith(dir string, opts ReplayOptions, fn func(seq uint64, payload []byte) error) (ReplayStats, error) {
	if opts.FS == nil {
		opts.FS = vfs.OS
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.QuarantineDir == "" {
		opts.QuarantineDir = filepath.Join(dir, "quarantine")
	}
	var st ReplayStats
	seqs, err := segments(opts.FS, dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return st, nil
		}
		return st, err
	}
	rp := replayer{opts: opts, fn: fn, st: &st}
	for _, seq := range seqs {
		st.Segments++
		if err := rp.segment(filepath.Join(dir, segName(seq)), seq); err != nil {
			return st, err
		}
	}
	if st.LostBytes > 0 {
		opts.Logger.Warn("wal: replay skipped damaged data", "records_lost", st.LostRecords, "bytes_lost", st.LostBytes,
			"damaged_segments", st.Damaged, "torn_tails", st.TornTails, "quarantine", opts.QuarantineDir)
	}
	return st, nil
}

type replayer struct {
	opts ReplayOptions
	fn   func(uint64, []byte) error
	st   *ReplayStats
	r    segReader
}

func (rp *replayer) segment(path string, seq uint64) error {
	f, err := rp.opts.FS.Open(path)
	if err != nil {
		return fmt.Errorf("wal: open %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("wal: stat %s: %w", path, err)
	}
	size := fi.Size()
	if size == 0 {
		return nil
	}
	rp.r.reset(f, size)
	hdr, err := rp.r.at(0, min(size, segHeaderSize))
	if err != nil {
		return fmt.Errorf("wal: read %s: %w", path, err)
	}
	switch {
	case size >= segHeaderSize && string(hdr[:4]) == segMagic && binary.LittleEndian.Uint32(hdr[4:8]) == formatVersion:
		return rp.v2(path, seq, segHeaderSize)
	case size >= segHeaderSize && string(hdr[:4]) == segMagic:
		return fmt.Errorf("wal: %s is format version %d, which this build does not know; refusing to replay it", path,
			binary.LittleEndian.Uint32(hdr[4:8]))
	case rp.v1First():
		return rp.v1(path, seq)
	default:
		// A damaged segment header: look for version 2 records from the start.
		return rp.v2(path, seq, 0)
	}
}

// v2 replays a version 2 segment from off, resynchronising past damage.
func (rp *replayer) v2(path string, seq uint64, off int64) error {
	size := rp.r.size
	var expect uint64
	damaged := false
	for off < size {
		h, payload, ok := rp.record(off)
		if ok && h.index >= expect {
			if h.index > expect {
				// Records missing without a damaged byte between: count them all the same.
				rp.st.LostRecords += int64(h.index - expect)
			}
			if err := rp.fn(seq, payload); err != nil {
				return fmt.Errorf("wal: replay %s at %d: %w", path, off, err)
			}
			rp.st.Records++
			expect = h.index + 1
			off += recHeaderSize + int64(h.length)
			continue
		}
		next, nh, found, err := rp.resync(off + 1)
		if err != nil {
			return fmt.Errorf("wal: read %s: %w", path, err)
		}
		if !found {
			return rp.tail(path, off)
		}
		if !damaged {
			damaged = true
			rp.st.Damaged++
			rp.quarantine(path, 0, "")
		}
		lost := int64(nh.index - expect)
		rp.st.LostRecords += lost
		rp.st.LostBytes += next - off
		rp.opts.Logger.Error("wal: damaged records in the middle of a segment; resumed at the next intact record",
			"segment", path, "from", off, "to", next, "records_lost", lost, "bytes_lost", next-off)
		expect = nh.index
		off = next
	}
	return nil
}

// record reads the version 2 record at off; ok only if magic, bounds and checksum hold.
func (rp *replayer) record(off int64) (recordHeader, []byte, bool) {
	size := rp.r.size
	if size-off < recHeaderSize {
		return recordHeader{}, nil, false
	}
	b, err := rp.r.at(off, recHeaderSize)
	if err != nil {
		return recordHeader{}, nil, false
	}
	var hdr [recHeaderSize]byte
	copy(hdr[:], b)
	h, ok := parseHeader(hdr[:])
	if !ok || h.length > MaxRecord || int64(h.length) > size-off-recHeaderSize {
		return recordHeader{}, nil, false
	}
	payload, err := rp.r.at(off+recHeaderSize, int64(h.length))
	if err != nil || !h.check(hdr[:], payload) {
		return recordHeader{}, nil, false
	}
	return h, payload, true
}

// resync finds the first intact record at or after from.
func (rp *replayer) resync(from int64) (int64, recordHeader, bool, error) {
	var magic [4]byte
	binary.LittleEndian.PutUint32(magic[:], recMagic)
	const chunk = 1 << 20
	size := rp.r.size
	for pos := from; pos+recHeaderSize <= size; {
		n := min(int64(chunk+len(magic)-1), size-pos)
		b, err := rp.r.at(pos, n)
		if err != nil {
			return 0, recordHeader{}, false, err
		}
		i := bytes.Index(b, magic[:])
		if i < 0 {
			pos += max(1, n-int64(len(magic)-1))
			continue
		}
		cand := pos + int64(i)
		if h, _, ok := rp.record(cand); ok {
			return cand, h, true, nil
		}
		pos = cand + 1
	}
	return 0, recordHeader{}, false, nil
}

// tail cuts a damaged or incomplete end off a segment, after copying it to quarantine.
func (rp *replayer) tail(path string, off int64) error {
	lost := rp.r.size - off
	rp.st.TornTails++
	rp.st.LostBytes += lost
	if off < segHeaderSize && lost < segHeaderSize {
		// A segment whose header write never completed: it never held a record.
		return nil
	}
	rp.opts.Logger.Warn("wal: incomplete or damaged write at the end of a segment; cutting it off",
		"segment", path, "offset", off, "bytes", lost)
	if !rp.quarantine(path, off, fmt.Sprintf(".tail-%d", off)) {
		// Left in place it harms nothing: new records always go to a new segment.
		return nil
	}
	f, err := rp.opts.FS.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("wal: truncate %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Truncate(off); err != nil {
		return fmt.Errorf("wal: truncate %s at %d: %w", path, off, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("wal: truncate %s at %d: sync: %w", path, off, err)
	}
	return nil
}

// quarantine copies the segment from off to its end into the quarantine folder, once: a copy
// already there (from an earlier start) is kept. It reports whether a copy exists.
func (rp *replayer) quarantine(path string, off int64, suffix string) bool {
	fsys, dir := rp.opts.FS, rp.opts.QuarantineDir
	dst := filepath.Join(dir, filepath.Base(path)+suffix)
	if _, err := fsys.Stat(dst); err == nil {
		return true
	}
	err := func() error {
		if err := fsys.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		tmp, err := fsys.CreateTemp(dir, ".tmp-*")
		if err != nil {
			return err
		}
		_, err = io.Copy(tmp, io.NewSectionReader(rp.r.f, off, rp.r.size-off))
		if err == nil {
			err = tmp.Sync()
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = fsys.Rename(tmp.Name(), dst)
		}
		if err != nil {
			fsys.Remove(tmp.Name())
			return err
		}
		return fsys.SyncDir(dir)
	}()
	if err != nil {
		rp.opts.Logger.Error("wal: cannot copy damaged segment to quarantine; leaving it in place", "segment", path, "err", err)
		return false
	}
	rp.st.Quarantined = append(rp.st.Quarantined, dst)
	return true
}

// v1First reports whether the segment starts with an intact version 1 record.
func (rp *replayer) v1First() bool {
	size := rp.r.size
	if size < v1HeaderSize {
		return false
	}
	b, err := rp.r.at(0, v1HeaderSize)
	if err != nil {
		return false
	}
	n := binary.LittleEndian.Uint32(b[0:4])
	sum := binary.LittleEndian.Uint32(b[4:8])
	if n > MaxRecord || int64(n) > size-v1HeaderSize {
		return false
	}
	p, err := rp.r.at(v1HeaderSize, int64(n))
	return err == nil && crc32.Checksum(p, castagnoli) == sum
}

// v1 replays a version 1 segment. Its records carry no magic, so damage ends it, as it always did.
func (rp *replayer) v1(path string, seq uint64) error {
	size := rp.r.size
	var off int64
	for off < size {
		if size-off < v1HeaderSize {
			return rp.tail(path, off)
		}
		b, err := rp.r.at(off, v1HeaderSize)
		if err != nil {
			return fmt.Errorf("wal: read %s: %w", path, err)
		}
		n := binary.LittleEndian.Uint32(b[0:4])
		sum := binary.LittleEndian.Uint32(b[4:8])
		if n > MaxRecord || int64(n) > size-off-v1HeaderSize {
			return rp.tail(path, off)
		}
		p, err := rp.r.at(off+v1HeaderSize, int64(n))
		if err != nil {
			return fmt.Errorf("wal: read %s: %w", path, err)
		}
		if crc32.Checksum(p, castagnoli) != sum {
			return rp.tail(path, off)
		}
		if err := rp.fn(seq, p); err != nil {
			return fmt.Errorf("wal: replay %s at %d: %w", path, off, err)
		}
		rp.st.Records++
		off += v1HeaderSize + int64(n)
	}
	return nil
}

// segReader reads a segment at arbitrary offsets through a window, so the sequential pass costs
// one read per megabyte and resynchronisation can jump around.
type segReader struct {
	f      vfs.File
	size   int64
	win    []byte
	winOff int64
	winLen int
	big    []byte
}

const windowSize = 1 << 20

func (r *segReader) reset(f vfs.File, size int64) {
	r.f, r.size, r.winOff, r.winLen = f, size, 0, 0
	if r.win == nil {
		r.win = make([]byte, windowSize+recHeaderSize)
	}
}

// at returns n bytes at off, valid until the next call.
func (r *segReader) at(off, n int64) ([]byte, error) {
	if off < 0 || n < 0 || off+n > r.size {
		return nil, io.ErrUnexpectedEOF
	}
	if n > int64(len(r.win)) {
		if int64(cap(r.big)) < n {
			r.big = make([]byte, n)
		}
		b := r.big[:n]
		if _, err := r.f.ReadAt(b, off); err != nil && !(errors.Is(err, io.EOF) && off+n == r.size) {
			return nil, err
		}
		return b, nil
	}
	if off >= r.winOff && off+n <= r.winOff+int64(r.winLen) {
		s := off - r.winOff
		return r.win[s : s+n], nil
	}
	want := min(int64(len(r.win)), r.size-off)
	got, err := r.f.ReadAt(r.win[:want], off)
	if int64(got) < want && err != nil {
		r.winLen = 0
		return nil, err
	}
	r.winOff, r.winLen = off, int(want)
	return r.win[:n], nil
}
