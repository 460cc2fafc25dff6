package mixpanel

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"
)

// FuzzRecordReader checks that every record the reader returns is one JSON
// object taken from one line of the input, that it ends with io.EOF or a
// *DecodeError, and that it never returns more records than lines.
func FuzzRecordReader(f *testing.F) {
	f.Add(fixture(f, "export-2days.jsonl"), 0)
	f.Add([]byte("{\"a\":1}\r\n\n{\"b\":[1,2,{\"c\":null}]}"), 16)
	f.Add([]byte("{\"a\":1}{\"b\":2}\n[1]\n"), 0)
	f.Add([]byte("\xEF\xBB\xBF{\"a\":\"\xff\"}\n"), 4)
	f.Fuzz(func(t *testing.T, data []byte, limit int) {
		limit %= 1 << 12
		rr := NewRecordReader(bytes.NewReader(data), limit)
		lines := int64(bytes.Count(data, []byte("\n")) + 1)
		var n int64
		for {
			rec, err := rr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				var derr *DecodeError
				if !errors.As(err, &derr) {
					t.Fatalf("error %v is not a *DecodeError", err)
				}
				if derr.Line < 1 || derr.Line > lines || derr.Offset < 0 || derr.Offset > int64(len(data)) {
					t.Fatalf("DecodeError line %d offset %d out of range (%d lines, %d bytes)", derr.Line, derr.Offset, lines, len(data))
				}
				break
			}
			n++
			if !json.Valid(rec) || rec[0] != '{' || bytes.ContainsAny(rec, "\n") {
				t.Fatalf("record %q is not one JSON object from one line", rec)
			}
			if !bytes.Contains(data, rec) {
				t.Fatalf("record %q is not in the input", rec)
			}
		}
		if n > lines || n != rr.Count() {
			t.Fatalf("%d records (Count %d) from %d lines", n, rr.Count(), lines)
		}
	})
}

// FuzzDecodeEngagePage checks that a decoded page holds only objects and
// sane paging numbers, and that decoding never panics.
func FuzzDecodeEngagePage(f *testing.F) {
	for _, name := range []string{"engage-page0.json", "engage-page1.json", "engage-page2.json", "query-error-session.json"} {
		f.Add(fixture(f, name))
	}
	f.Add([]byte(`{"page":-1,"page_size":1000,"results":[]}`))
	f.Add([]byte(`{"status":"error","results":[1,"x",null]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := DecodeEngagePage(data)
		if err != nil {
			return
		}
		if p.Page < 0 || p.PageSize < 0 {
			t.Fatalf("page %d page_size %d accepted", p.Page, p.PageSize)
		}
		for _, r := range p.Results {
			var m map[string]json.RawMessage
			if err := json.Unmarshal(r, &m); err != nil {
				t.Fatalf("result %q is not an object: %v", r, err)
			}
		}
	})
}

// FuzzIngestAnswer decodes /import and /engage answers and maps them onto a
// batch: every failure lands on a position of the batch or on -1, imported
// never exceeds what was sent, and failures plus imports account for the
// batch when Mixpanel gives no count.
func FuzzIngestAnswer(f *testing.F) {
	for _, name := range []string{"import-200.json", "import-400-guide.json", "import-400-openapi.json", "import-400-body.json",
		"import-401.json", "engage-verbose-ok.json", "engage-verbose-fail.json", "engage-400-strict.json"} {
		f.Add(fixture(f, name), uint8(3))
	}
	f.Add([]byte("0"), uint8(2))
	f.Add([]byte(`{"failed_records":[{"index":1e9},{"index":-3},{"index":"2"},{"index":2.5},{"index":1,"insert_id":7}]}`), uint8(4))
	f.Fuzz(func(t *testing.T, data []byte, n uint8) {
		ans, err := DecodeIngestAnswer(data)
		if err != nil {
			return
		}
		pos := make([]int64, n)
		for i := range pos {
			pos[i] = 1000 + int64(i)
		}
		c := &Client{secrets: &secrets{redactor: newRedactor("tok-TOKEN-c0ffee1234")}}
		res := &BatchResult{}
		c.mapAnswer(res, ans, pos)
		if res.Imported < 0 || res.Imported > int64(n) {
			t.Fatalf("imported %d of %d", res.Imported, n)
		}
		for _, fr := range res.Failed {
			switch {
			case fr.Pos == -1 && fr.Index == -1:
			case fr.Index >= 0 && fr.Index < int(n) && fr.Pos == pos[fr.Index]:
			default:
				t.Fatalf("failure %+v maps outside the batch of %d", fr, n)
			}
		}
		if len(ans.FailedRecords) == 0 && !ans.success() && len(res.Failed) != int(n) {
			t.Fatalf("a refused batch of %d reported %d failures", n, len(res.Failed))
		}
	})
}
