package store

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// blockAt writes one block of 50 ten-span traces whose IDs start with id, its spans ending at end.
func blockAt(t *testing.T, s *Store, id byte, end time.Time) {
	t.Helper()
	for k := range byte(50) {
		var spans []*tracepb.Span
		for i := byte(1); i <= 10; i++ {
			x := sp(id, i, i-1, end)
			x.TraceId[1] = k
			x.Name = fmt.Sprintf("op-%d-%d-%d", id, k, i)
			spans = append(spans, x)
		}
		if err := s.Append(req(t, "svc", spans...)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
}

func hasTrace(t *testing.T, s *Store, id byte) bool {
	tid := [16]byte(bytes.Repeat([]byte{id}, 16))
	tid[1] = 0
	for _, b := range s.Blocks() {
		rss, err := b.FindTrace(t.Context(), tid)
		if err != nil {
			t.Fatal(err)
		}
		if len(rss) > 0 {
			return true
		}
	}
	return false
}

// Past storage.max_disk_bytes the blocks with the oldest data go first, counted, with room
// kept for the WAL, and the store stays within the budget as blocks keep coming.
func TestDiskBudgetDeletesOldestDataFirst(t *testing.T) {
	const room = 64 << 10
	s := open(t, t.TempDir(), func(o *Options) {
		o.CompactMinBlocks = -1
		o.HeadMaxBytes, o.BlockMaxBytes, o.CompactTargetBytes = room, room, room
		o.WAL.SegmentBytes = room
	})
	defer s.Close()
	// About three blocks' worth beyond the reserves.
	blockAt(t, s, 1, time.Now())
	one := s.Stats().BlockBytes
	s.opts.MaxDiskBytes = s.walReserve() + room + 3*one + one/2
	if got := s.blockBudget(); got < 3*one || got > 4*one {
		t.Fatalf("block budget %d, want three to four blocks of %d", got, one)
	}

	now := time.Now()
	// Block 2 holds the oldest data although it is written second.
	blockAt(t, s, 2, now.Add(-time.Hour))
	for id := byte(3); id <= 8; id++ {
		blockAt(t, s, id, now.Add(time.Duration(id)*time.Second))
		if st := s.Stats(); st.BlockBytes > s.blockBudget() {
			t.Fatalf("after block %d: blocks take %d bytes, budget %d", id, st.BlockBytes, s.blockBudget())
		}
	}
	st := s.Stats()
	if st.BudgetDeleted != 8-st.Blocks || st.Blocks < 3 {
		t.Fatalf("%d blocks kept, %d deleted by the budget, want 8 in all and at least 3 kept", st.Blocks, st.BudgetDeleted)
	}
	if hasTrace(t, s, 2) {
		t.Fatal("the block with the oldest data survived newer ones")
	}
	for id := byte(9 - st.Blocks); id <= 8; id++ {
		if !hasTrace(t, s, id) {
			t.Fatalf("block %d, among the newest %d, was deleted", id, st.Blocks)
		}
	}
	if st.BlocksDeleted != 0 {
		t.Fatalf("retention deleted %d blocks; the data is recent", st.BlocksDeleted)
	}
}
