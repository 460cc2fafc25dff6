package exporter

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/cebulk/cebulk/internal/s3stream"
	"github.com/cebulk/cebulk/pkg/ce"
)

// Output format of a part.
const (
	partFormat      = "jsonl.gz"
	partContentType = "application/gzip"
	// gzipLevel trades CPU for size; CPU is what bounds a collect. With
	// github.com/klauspost/compress/gzip (standard gzip output, a drop-in
	// for compress/gzip), on sample Mixpanel events, one core
	// (BenchmarkGzipLevels, README): level 2 389–414 MB/s at a 5.49x ratio,
	// its level 1 357–399 MB/s (5.48x), level 3 343–347 MB/s (5.62x), level
	// 6 200 MB/s (6.16x); the standard library's level 1 185 MB/s (5.01x)
	// and level 6 100 MB/s (6.49x).
	gzipLevel = 2
	// blockSize is the input of one gzip member: records are compressed in
	// blocks of about this much JSON, in parallel when there is more than
	// one CPU; concatenated members are one valid gzip file.
	blockSize = 512 << 10
	// blockSlack is room past blockSize for the record that fills a block.
	blockSlack = 64 << 10
	// partSize is the least compressed size of a multipart part (S3's
	// minimum, 5 MiB, for every part but the last). Each part is whole
	// gzip members, and the collect checkpoints after each.
	partSize = 5 << 20
)

var noCondition s3stream.Condition

// encoder turns a CE download into gzip JSON lines, keeping the records
// whose own time falls in [from, to) (every record when all), cut into
// parts of whole gzip members.
//
// The pipeline: the caller's goroutine frames the records (ce.RecordReader,
// no decoding), filters them and fills blocks of JSON lines; workers gzip
// each block into its own member; a sink appends the members, in order,
// to the current part and hashes them; an uploader hands each finished
// part to seal. Memory is a few blocks per worker plus two parts, whatever
// the download's size.
type encoder struct {
	from, to time.Time
	all      bool
	want     int64 // records CE says it delivered; fewer decoded is a truncation
	workers  int   // compressing goroutines (GOMAXPROCS when 0)

	// Counters and the running SHA-256 of the output; a resumed encoder
	// starts from a checkpoint's values.
	records, outOfWindow int64 // records written, records outside the window
	bytes, downloaded    int64 // bytes of sealed parts, bytes read from the source
	sum                  hash.Hash
}

// cut is the state of an encoding at the end of a part: resuming there
// reproduces exactly the output that follows.
type cut struct {
	pos                         ce.Position
	seam                        *seam // the last record before pos
	records, outOfWindow, bytes int64
	sum                         []byte // marshalled SHA-256 state
	last                        bool   // the final part
}

// encode encodes src into dst as one gzip stream (its members
// concatenated), for tests and benchmarks.
func (c *encoder) encode(src io.Reader, dst io.Writer) error {
	in := &countingReader{r: src}
	return c.run(context.Background(), ce.NewRecordReader(in), in, func(data []byte, _ cut) error {
		_, err := dst.Write(data)
		return err
	})
}

// block is one unit of compression: JSON lines in, one gzip member out,
// with the encoding's state after its last record.
type block struct {
	plain, out bytes.Buffer
	at         cut
	done       chan error
}

// run reads every record of rr (in counts the source's bytes) and calls
// seal for each part in order, from one goroutine; the last part has
// at.last set. A part is sealed only when complete, so an error leaves
// behind exactly the parts sealed before it.
func (c *encoder) run(ctx context.Context, rr *ce.RecordReader, in *countingReader, seal func(data []byte, at cut) error) error {
	workers := c.workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if c.sum == nil {
		c.sum = sha256.New()
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg    sync.WaitGroup
		nfree = workers + 2
		free  = make(chan *block, nfree)
		work  = make(chan *block, nfree)
		order = make(chan *block, nfree)
		parts = make(chan partBuf)
		spare = make(chan *bytes.Buffer, 2)
	)
	for range nfree {
		// Sized once too: grown from empty, each block's buffer doubled up
		// to 1 MiB (8 MiB of garbage per collect and twice the memory held);
		// only a record larger than the slack grows it now.
		b := &block{}
		b.plain.Grow(blockSize + blockSlack)
		free <- b
	}
	for range 2 {
		// Sized once: a part is cut at the first member past partSize, and
		// a member is smaller than its block.
		spare <- bytes.NewBuffer(make([]byte, 0, partSize+blockSize+blockSlack))
	}
	fail := func(err error) { cancel(err) }

	// Compressors.
	for range workers {
		wg.Go(func() {
			zw, _ := gzip.NewWriterLevel(io.Discard, gzipLevel)
			for b := range work {
				b.out.Reset()
				zw.Reset(&b.out)
				_, err := zw.Write(b.plain.Bytes())
				if err == nil {
					err = zw.Close()
				}
				b.done <- err
			}
		})
	}
	// Sink: members in order into parts.
	sinkDone := make(chan struct{})
	go func() {
		defer close(sinkDone)
		defer close(parts)
		var cur *bytes.Buffer
		var at cut
		for b := range order {
			err := <-b.done
			if err == nil && ctx.Err() == nil {
				if cur == nil {
					select {
					case cur = <-spare:
					case <-ctx.Done():
					}
				}
				if cur != nil {
					cur.Write(b.out.Bytes())
					c.sum.Write(b.out.Bytes())
					at = b.at
					at.bytes = c.bytes + int64(cur.Len())
				}
			} else if err != nil {
				fail(err)
			}
			last := b.at.last
			free <- b
			if cur == nil || ctx.Err() != nil || (cur.Len() < partSize && !last) {
				continue
			}
			at.last = last
			if at.sum, err = c.sum.(encoding.BinaryMarshaler).MarshalBinary(); err != nil {
				fail(err)
				continue
			}
			c.bytes = at.bytes
			select {
			case parts <- partBuf{buf: cur, at: at}:
				cur = nil
			case <-ctx.Done():
			}
		}
	}()
	// Uploader: seals parts one after another.
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		for p := range parts {
			if ctx.Err() == nil {
				if err := seal(p.buf.Bytes(), p.at); err != nil {
					fail(err)
				}
			}
			p.buf.Reset()
			spare <- p.buf
		}
	}()

	err := c.produce(ctx, rr, in, free, work, order)
	if err != nil {
		fail(err)
	}
	close(work)
	close(order)
	wg.Wait()
	<-sinkDone
	<-upDone
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

type partBuf struct {
	buf *bytes.Buffer
	at  cut
}

// produce frames, filters and batches the records into blocks.
func (c *encoder) produce(ctx context.Context, rr *ce.RecordReader, in *countingReader, free <-chan *block, work, order chan<- *block) error {
	var b *block
	next := func() bool {
		select {
		case b = <-free:
			b.plain.Reset()
			b.done = make(chan error, 1)
			return true
		case <-ctx.Done():
			return false
		}
	}
	// lastAt is where the record last read began, lastRec that record
	// (a view, valid until the next read).
	var (
		lastAt  ce.Position
		lastRec []byte
	)
	send := func(last bool) bool {
		b.at = cut{pos: rr.Position(), records: c.records, outOfWindow: c.outOfWindow, last: last}
		if !last && lastRec != nil {
			b.at.seam = newSeam(lastAt, lastRec)
		}
		work <- b
		order <- b
		b = nil
		return last || next()
	}
	if !next() {
		return context.Cause(ctx)
	}
	for {
		lastAt = rr.Position()
		rec, err := rr.NextView()
		lastRec = rec
		if err == io.EOF {
			break
		}
		if err != nil {
			c.downloaded = in.n
			return fmt.Errorf("decode the CE download: %w", err)
		}
		if c.all || c.inWindow(rec) {
			if bytes.IndexByte(rec, '\n') >= 0 || bytes.IndexByte(rec, '\r') >= 0 {
				// One record per line: drop the white space between tokens
				// (strings cannot hold raw line breaks).
				if err := json.Compact(&b.plain, rec); err != nil {
					return fmt.Errorf("decode the CE download: record %d: %v", rr.Count()-1, err)
				}
			} else {
				b.plain.Write(rec)
			}
			b.plain.WriteByte('\n')
			c.records++
		} else {
			c.outOfWindow++
		}
		if b.plain.Len() >= blockSize && !send(false) {
			return context.Cause(ctx)
		}
	}
	c.downloaded = in.n
	if decoded := c.records + c.outOfWindow; c.want > 0 && decoded < c.want {
		return fmt.Errorf("truncated download: %d records decoded, CE reported %d: %w", decoded, c.want, io.ErrUnexpectedEOF)
	}
	send(true)
	return nil
}

func (c *encoder) inWindow(rec []byte) bool {
	t, ok := eventTime(rec)
	return ok && !t.Before(c.from) && t.Before(c.to)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// eventTime reads an activity's own time, properties.time: Unix seconds,
// or milliseconds when it is 1e11 or more (as Mixpanel does), as a JSON
// number or a string holding one; an RFC 3339 string is accepted too. It
// scans the record without decoding it: the record is valid JSON (the
// record reader checked it).
func eventTime(rec []byte) (time.Time, bool) {
	// One walk: the last "properties" member wins, and within it the last
	// "time", as encoding/json decides; the properties object is scanned
	// once.
	var v []byte
	ok := false
	_, good := walkObject(rec, skipSpace(rec, 0), func(k []byte, escaped bool, vs int) int {
		if !keyIs(k, escaped, "properties") {
			return skipValue(rec, vs)
		}
		v, ok = nil, false
		if rec[vs] != '{' {
			return skipValue(rec, vs)
		}
		end, good := walkObject(rec, vs, func(k []byte, escaped bool, vs int) int {
			ve := skipValue(rec, vs)
			if ve >= 0 && keyIs(k, escaped, "time") {
				v, ok = rec[vs:ve], true
			}
			return ve
		})
		if !good {
			return -1
		}
		return end
	})
	if !good || !ok || len(v) == 0 {
		return time.Time{}, false
	}
	if v[0] == '"' {
		var s string
		if json.Unmarshal(v, &s) != nil {
			return time.Time{}, false
		}
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t, true
		}
		v = []byte(s)
	}
	if n, ok := parseInt(v); ok {
		if n >= 1e11 || n <= -1e11 {
			return time.UnixMilli(n), true
		}
		return time.Unix(n, 0), true
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil {
		return time.Time{}, false
	}
	if f >= 1e11 || f <= -1e11 {
		f /= 1000
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), true
}

// parseInt parses a decimal integer of at most 18 digits.
func parseInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// walkObject calls visit for each member of the object that starts at
// obj[i], with the member's raw key, whether the key holds escapes, and
// where its value starts; visit returns the index after the value (-1
// stops the walk). It returns the index after the object, and false when
// the object is malformed.
func walkObject(obj []byte, i int, visit func(key []byte, escaped bool, vs int) int) (int, bool) {
	if i >= len(obj) || obj[i] != '{' {
		return -1, false
	}
	i++
	for {
		i = skipSpace(obj, i)
		if i >= len(obj) {
			return -1, false
		}
		switch obj[i] {
		case '}':
			return i + 1, true
		case ',':
			i++
			continue
		case '"':
		default:
			return -1, false
		}
		ks := i
		ke, escaped := scanString(obj, i)
		if ke < 0 {
			return -1, false
		}
		i = skipSpace(obj, ke)
		if i >= len(obj) || obj[i] != ':' {
			return -1, false
		}
		i = skipSpace(obj, i+1)
		if i >= len(obj) {
			return -1, false
		}
		if i = visit(obj[ks:ke], escaped, i); i < 0 {
			return -1, false
		}
	}
}

func keyIs(raw []byte, escaped bool, key string) bool {
	if !escaped {
		return string(raw[1:len(raw)-1]) == key
	}
	var s string
	return json.Unmarshal(raw, &s) == nil && s == key
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString returns the index after the string starting at b[i] (a quote)
// and whether it holds escapes, or -1.
func scanString(b []byte, i int) (int, bool) {
	escaped := false
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j + 1, escaped
		}
	}
	return -1, false
}

// skipValue returns the index after the value starting at b[i], or -1.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		j, _ := scanString(b, i)
		return j
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				e, _ := scanString(b, j)
				if e < 0 {
					return -1
				}
				j = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) {
		switch b[j] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return j
		}
		j++
	}
	return j
}

// seam identifies the record just before a checkpoint's source position:
// where it starts and a hash of its bytes. A resume reads the source from
// At and checks that the first record there is the same, which proves the
// source did not change under the checkpoint (a download served again from
// its start, a live export asked again) before anything after it is kept.
type seam struct {
	At   ce.Position `json:"at"`
	Hash string      `json:"sha256"`
}

func newSeam(at ce.Position, rec []byte) *seam {
	h := sha256.Sum256(rec)
	return &seam{At: at, Hash: hex.EncodeToString(h[:])}
}

// matches reports whether rec, read from s.At, is the record s names.
func (s *seam) matches(rec []byte) bool {
	h := sha256.Sum256(rec)
	return hex.EncodeToString(h[:]) == s.Hash
}
