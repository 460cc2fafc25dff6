package recordio

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"testing"
)

// row is an Item in a form cmp.Diff can compare: Reason is the RowError's
// reason, Raw a copy.
type row struct {
	Line   int
	Record map[string]any
	Reason string
	Raw    string
}

// result is everything a Reader yields, up to the end.
type result struct {
	Rows []row
	End  string // "EOF", or the *FileError's text, or "error: ..." for other errors
}

// readAll opens content as name and reads it to the end.
func readAll(t *testing.T, content []byte, name string, opts Options) result {
	t.Helper()
	rd, err := Open(bytes.NewReader(content), name, opts)
	if err != nil {
		return result{End: endOf(t, err)}
	}
	return drain(t, rd, false)
}

// drain reads rd to the end; withRaw keeps Raw in the rows.
func drain(t *testing.T, rd *Reader, withRaw bool) result {
	t.Helper()
	var res result
	for i := 0; ; i++ {
		if i > 1e7 {
			t.Fatal("Next never ends")
		}
		it, err := rd.Next()
		if err != nil {
			res.End = endOf(t, err)
			if _, again := rd.Next(); !errors.Is(again, err) && again.Error() != err.Error() {
				t.Errorf("Next after %v = %v, want the same error again", err, again)
			}
			return res
		}
		r := row{Line: it.Line, Record: it.Record}
		if withRaw {
			r.Raw = string(it.Raw)
		}
		if it.Err != nil {
			var re *RowError
			if !errors.As(it.Err, &re) {
				t.Fatalf("Item.Err = %T %v, want *RowError", it.Err, it.Err)
			}
			if re.Line != it.Line {
				t.Errorf("RowError.Line = %d, want Item.Line %d", re.Line, it.Line)
			}
			if it.Record != nil {
				t.Errorf("Item.Record = %v with Err %v, want nil", it.Record, it.Err)
			}
			r.Reason = re.Reason
		}
		res.Rows = append(res.Rows, r)
	}
}

func endOf(t *testing.T, err error) string {
	t.Helper()
	var fe *FileError
	switch {
	case err == io.EOF:
		return "EOF"
	case errors.As(err, &fe):
		return fe.Error()
	}
	return "error: " + err.Error()
}

func gzipBytes(t testing.TB, parts ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, p := range parts { // one gzip member per part
		zw := gzip.NewWriter(&buf)
		if _, err := io.WriteString(zw, p); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// rec builds a record from alternating keys and values.
func rec(kv ...any) map[string]any {
	m := make(map[string]any, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

// repeatReader yields prefix, then n bytes of fill, then suffix, without
// holding them.
type repeatReader struct {
	prefix, suffix string
	fill           byte
	n              int64
	block          []byte
}

func newRepeatReader(prefix string, fill byte, n int64, suffix string) *repeatReader {
	return &repeatReader{prefix: prefix, suffix: suffix, fill: fill, n: n, block: bytes.Repeat([]byte{fill}, 32<<10)}
}

func (r *repeatReader) Read(p []byte) (int, error) {
	switch {
	case r.prefix != "":
		n := copy(p, r.prefix)
		r.prefix = r.prefix[n:]
		return n, nil
	case r.n > 0:
		n := copy(p[:min(int64(len(p)), r.n)], r.block)
		r.n -= int64(n)
		return n, nil
	case r.suffix != "":
		n := copy(p, r.suffix)
		r.suffix = r.suffix[n:]
		return n, nil
	}
	return 0, io.EOF
}

// failingReader returns its content, then err.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}
