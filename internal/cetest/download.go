package cetest

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// handleDownload streams the records of a completed download job:
// GET bulk/{id}/{object}. The body is written while the records are
// generated; it is never built whole.
//
// Accept picks the format: text/csv gives CSV with flattened columns
// (properties.time, ...); application/jsonl (or application/x-ndjson) gives
// JSON lines; application/json gives Options.DownloadFormat framing; */* or
// no Accept gives the job's own format. Anything else is 406.
func (f *Fake) handleDownload(w http.ResponseWriter, r *http.Request, id, object string) {
	j := f.lockJob(w, id)
	if j == nil {
		return
	}
	_, known := f.data[object]
	var (
		msg         string
		code        = http.StatusBadRequest
		kind, ctype string
		cut         = int64(-1)
		sel         = j.sel
	)
	switch {
	case !known:
		msg = "Unknown object " + quote(object) + ": the mixpanel element has activities and users"
	case j.direction != DirectionDownload:
		msg = "Bulk job " + id + " is an upload job: it has nothing to download"
	case j.object != object:
		msg = "Bulk job " + id + " holds " + quote(j.object) + ", not " + quote(object)
	case j.status != StatusCompleted:
		msg = "Bulk job " + id + " is " + j.status + ", not COMPLETED"
	default:
		var ok bool
		if kind, ctype, ok = negotiate(r.Header.Get("Accept"), j.format, f.opts.DownloadFormat); !ok {
			code, msg = http.StatusNotAcceptable, "Cannot produce "+quote(r.Header.Get("Accept"))+": use application/json, application/jsonl or text/csv"
		} else if len(f.cuts) > 0 {
			cut, f.cuts = f.cuts[0], f.cuts[1:]
		} else if f.cutAll != nil {
			cut = *f.cutAll
		}
	}
	f.mu.Unlock()
	if msg != "" {
		f.writeError(w, code, "%s", msg)
		return
	}

	write := func(dst io.Writer) error {
		bw := bufio.NewWriterSize(dst, 64<<10)
		var err error
		switch kind {
		case "csv":
			err = writeCSV(bw, sel)
		case "jsonl":
			err = writeJSONL(bw, sel)
		default:
			err = writeArray(bw, sel)
		}
		if err == nil {
			err = bw.Flush()
		}
		return err
	}

	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Accept-Ranges", "bytes")
	var skip int64
	if from, ok := rangeFrom(r.Header.Get("Range")); ok && !f.opts.IgnoreRanges {
		// The body is generated, not stored: one counting pass finds its
		// size for Content-Range (once per job and format).
		j.sizeMu.Lock()
		size, known := countWriter(j.sizes[kind]), j.sizes != nil && j.sizes[kind] > 0
		if !known {
			_ = write(&size)
			if j.sizes == nil {
				j.sizes = map[string]int64{}
			}
			j.sizes[kind] = int64(size)
		}
		j.sizeMu.Unlock()
		if from >= int64(size) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		skip = from
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, size-1, size))
		w.Header().Set("Content-Length", strconv.FormatInt(int64(size)-from, 10))
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.Header().Del("Accept-Ranges")
		if f.opts.IgnoreRanges {
			w.Header().Set("Accept-Ranges", "none")
		}
		w.WriteHeader(http.StatusOK)
	}
	cw := &cutWriter{w: w, limit: cut}
	var dst io.Writer = cw
	if f.opts.DownloadRate > 0 {
		dst = &rateWriter{w: dst, rate: f.opts.DownloadRate, at: skip, served: &j.served}
	}
	err := write(&skipWriter{w: dst, skip: skip})
	if err == nil && cut >= 0 {
		cw.abort() // the body was shorter than the cut: cut at its end
	}
}

// rangeFrom reads "bytes=N-", the one form of Range downloads honour.
func rangeFrom(h string) (int64, bool) {
	v, ok := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !ok {
		return 0, false
	}
	first, rest, ok := strings.Cut(v, "-")
	if !ok || rest != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(first, 10, 64)
	return n, err == nil && n >= 0
}

// countWriter counts and discards.
type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

// skipWriter discards the first skip bytes written to it.
type skipWriter struct {
	w    io.Writer
	skip int64
}

func (s *skipWriter) Write(p []byte) (int, error) {
	n := len(p)
	if s.skip > 0 {
		d := min(s.skip, int64(len(p)))
		s.skip -= d
		p = p[d:]
	}
	if len(p) == 0 {
		return n, nil
	}
	if _, err := s.w.Write(p); err != nil {
		return 0, err
	}
	return n, nil
}

// rateWriter paces the bytes past *served (the furthest offset earlier
// requests reached) to about rate bytes per second; at is the file offset
// of the next byte written.
type rateWriter struct {
	w      io.Writer
	rate   int64
	at     int64
	served *atomic.Int64
	start  time.Time
	slow   int64 // bytes paced so far
}

func (r *rateWriter) Write(p []byte) (int, error) {
	const slice = 4 << 10
	written := 0
	for len(p) > 0 {
		k := min(len(p), slice)
		n, err := r.w.Write(p[:k])
		written += n
		if old := r.served.Load(); r.at+int64(n) > old {
			fresh := r.at + int64(n) - max(old, r.at)
			for !r.served.CompareAndSwap(old, max(old, r.at+int64(n))) {
				old = r.served.Load()
			}
			if r.start.IsZero() {
				r.start = time.Now()
			}
			r.slow += fresh
			due := r.start.Add(time.Duration(float64(r.slow) / float64(r.rate) * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
		r.at += int64(n)
		if err != nil {
			return written, err
		}
		p = p[k:]
	}
	return written, nil
}

func quote(s string) string { return `"` + s + `"` }

// negotiate maps Accept to a body kind ("array", "jsonl" or "csv") and a
// Content-Type. jobFormat is the job's format and framing the configured
// framing of application/json.
func negotiate(accept, jobFormat, framing string) (kind, ctype string, ok bool) {
	byJob := func() (string, string, bool) {
		switch jobFormat {
		case "csv":
			return "csv", "text/csv", true
		case "jsonl":
			return "jsonl", "application/jsonl", true
		}
		return framing, "application/json", true
	}
	if strings.TrimSpace(accept) == "" {
		return byJob()
	}
	for part := range strings.SplitSeq(accept, ",") {
		mt, _, _ := strings.Cut(part, ";")
		switch strings.ToLower(strings.TrimSpace(mt)) {
		case "text/csv", "txt/csv":
			return "csv", "text/csv", true
		case "application/jsonl", "application/x-ndjson", "application/x-jsonlines":
			return "jsonl", "application/jsonl", true
		case "application/json":
			if jobFormat == "jsonl" {
				return "jsonl", "application/json", true
			}
			return framing, "application/json", true
		case "*/*", "application/*":
			return byJob()
		}
	}
	return "", "", false
}

// oneLine returns raw without line breaks, compacting it into scratch when
// needed.
func oneLine(raw json.RawMessage, scratch *bytes.Buffer) []byte {
	if bytes.IndexByte(raw, '\n') < 0 && bytes.IndexByte(raw, '\r') < 0 {
		return raw
	}
	scratch.Reset()
	if json.Compact(scratch, raw) != nil {
		return raw
	}
	return scratch.Bytes()
}

func writeJSONL(bw *bufio.Writer, sel selection) error {
	var err error
	var scratch bytes.Buffer
	sel.each(func(raw json.RawMessage) bool {
		if _, err = bw.Write(oneLine(raw, &scratch)); err == nil {
			err = bw.WriteByte('\n')
		}
		return err == nil
	})
	return err
}

func writeArray(bw *bufio.Writer, sel selection) error {
	err := bw.WriteByte('[')
	var scratch bytes.Buffer
	first := true
	sel.each(func(raw json.RawMessage) bool {
		if !first {
			if err = bw.WriteByte(','); err != nil {
				return false
			}
		}
		first = false
		_, err = bw.Write(oneLine(raw, &scratch))
		return err == nil
	})
	if err != nil {
		return err
	}
	_, err = bw.WriteString("]\n")
	return err
}

// writeCSV writes one row per record with the flattened fields as columns,
// in the order they are first seen. It reads the records twice (once for
// the columns), so it is meant for modest downloads.
func writeCSV(bw *bufio.Writer, sel selection) error {
	var cols []string
	index := map[string]int{}
	sel.each(func(raw json.RawMessage) bool {
		flatten(raw, "", func(k, _ string) {
			if _, ok := index[k]; !ok {
				index[k] = len(cols)
				cols = append(cols, k)
			}
		})
		return true
	})
	if len(cols) == 0 {
		return nil
	}
	cw := csv.NewWriter(bw)
	if err := cw.Write(cols); err != nil {
		return err
	}
	row := make([]string, len(cols))
	var err error
	sel.each(func(raw json.RawMessage) bool {
		clear(row)
		flatten(raw, "", func(k, v string) {
			if i, ok := index[k]; ok {
				row[i] = v
			}
		})
		err = cw.Write(row)
		return err == nil
	})
	cw.Flush()
	if err != nil {
		return err
	}
	return cw.Error()
}

// flatten calls emit for every leaf of the JSON object raw, in document
// order, with dotted keys ("properties.$browser"). Strings are unquoted,
// null is empty, arrays are kept as JSON text.
func flatten(raw []byte, prefix string, emit func(key, value string)) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return
		}
		switch v[0] {
		case '{':
			flatten(v, prefix+key+".", emit)
		case '"':
			var s string
			_ = json.Unmarshal(v, &s)
			emit(prefix+key, s)
		case 'n':
			emit(prefix+key, "")
		default:
			emit(prefix+key, string(v))
		}
	}
}

// cutWriter passes writes through until limit bytes (limit < 0: never),
// then flushes what it has and aborts the response, so that the client sees
// the connection end in the middle of the body.
type cutWriter struct {
	w        http.ResponseWriter
	limit, n int64
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if c.limit < 0 || int64(len(p)) < c.limit-c.n {
		n, err := c.w.Write(p)
		c.n += int64(n)
		return n, err
	}
	n, _ := c.w.Write(p[:c.limit-c.n])
	c.n += int64(n)
	c.abort()
	return n, nil
}

func (c *cutWriter) abort() {
	_ = http.NewResponseController(c.w).Flush()
	panic(http.ErrAbortHandler)
}
