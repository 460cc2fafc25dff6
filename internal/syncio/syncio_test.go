package syncio

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

func TestConcurrentWrites(t *testing.T) {
	var under bytes.Buffer
	w := NewWriter(&under)
	var b Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				_, _ = w.Write([]byte("line\n"))
				_, _ = b.Write([]byte("line\n"))
			}
		})
	}
	wg.Wait()
	if got := strings.Count(under.String(), "line\n"); got != 800 {
		t.Errorf("Writer kept %d lines, want 800", got)
	}
	if got := strings.Count(b.String(), "line\n"); got != 800 || len(b.Bytes()) != 800*5 {
		t.Errorf("Buffer kept %d lines (%d bytes), want 800", got, len(b.Bytes()))
	}
}
