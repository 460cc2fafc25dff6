package cetest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"time"
)

// maxRecordBytes is Mixpanel's limit on one event or profile update.
const maxRecordBytes = 1 << 20

type uploadResult struct {
	total, failed int64
	errors        []wireRecordError
	accepted      []json.RawMessage
}

// handleUpload runs POST bulk/{object}: a multipart body with a file part
// and a metaData part ({"format":"json","callback-payload":...}). The body
// is read as a stream, record by record, and every record is checked with
// Mixpanel's rules; the job's counts and per-record errors are reported once
// it completes.
//
// metaData's format decides how the file is read, as with CE (reference
// §2.8): "json" is a JSON array or JSON lines, and "csv" or no format at all
// is CSV with a header row. Without metaData before the file, the file's
// first byte decides ('[' or '{': JSON, else CSV), and a metaData part after
// the file must then agree with what was read.
func (f *Fake) handleUpload(w http.ResponseWriter, r *http.Request, object string) {
	if !f.knownObject(object) {
		f.writeError(w, http.StatusBadRequest, "Unknown object %q: the mixpanel element has activities and users", object)
		return
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		f.writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be multipart/form-data with a boundary")
		return
	}
	cb := r.Header.Get(CallbackHeader)
	if cb != "" && !validCallbackURL(cb) {
		f.writeError(w, http.StatusBadRequest, "Invalid %s: an absolute http or https URL is required", CallbackHeader)
		return
	}
	f.mu.Lock()
	u := uploader{object: object, hook: f.failHook, keep: !f.opts.DiscardUploads, now: f.now()}
	f.mu.Unlock()

	var meta wireMetaData
	sawFile, sawMeta := false, false
	format := "" // the format metaData asks for, once seen
	mr := multipart.NewReader(r.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			f.writeError(w, http.StatusBadRequest, "Invalid multipart body: %v", err)
			return
		}
		switch p.FormName() {
		case "metaData":
			data, err := io.ReadAll(io.LimitReader(p, maxSmallBody+1))
			if err == nil && len(data) > maxSmallBody {
				err = apiErrorf(http.StatusBadRequest, "metaData is larger than 1 MiB")
			}
			if err == nil {
				meta, err = parseMetaData(data)
			}
			if err == nil {
				format, err = uploadFormat(meta.Format)
			}
			if err != nil {
				f.fail(w, err)
				return
			}
			sawMeta = true
		case "file":
			if sawFile {
				f.writeError(w, http.StatusBadRequest, "More than one file part")
				return
			}
			sawFile = true
			if err := u.read(p, format); err != nil {
				f.fail(w, err)
				return
			}
		default:
			if _, err := io.Copy(io.Discard, p); err != nil {
				f.writeError(w, http.StatusBadRequest, "Invalid multipart body: %v", err)
				return
			}
		}
	}
	if !sawFile {
		f.writeError(w, http.StatusBadRequest, "Missing file part")
		return
	}
	jobFormat := u.format
	if sawMeta {
		if u.format != "" && u.format != format { // metaData came after the file
			f.writeError(w, http.StatusBadRequest, "The file is %s, but metaData %s", strings.ToUpper(u.format), describeFormat(meta.Format))
			return
		}
		jobFormat = format
	}
	if jobFormat == "" { // an empty file and no metaData
		jobFormat = "json"
	}

	f.mu.Lock()
	j := &bulkJob{
		object: object, direction: DirectionUpload, format: jobFormat,
		callback: cb, payload: meta.CallbackPayload, result: u.result,
	}
	f.addJobLocked(j)
	resp := wireCreated{ID: j.id, Status: j.status, InstanceID: f.opts.InstanceID}
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, resp)
}

// uploadFormat maps metaData's format to "json" or "csv". CE reads a file
// without format as CSV (reference §2.8).
func uploadFormat(format string) (string, error) {
	switch strings.ToLower(format) {
	case "json":
		return "json", nil
	case "csv", "":
		return "csv", nil
	}
	return "", apiErrorf(http.StatusBadRequest, "Unsupported format %q: the emulator accepts format json (an array or JSON lines) and CSV (format csv, or no format)", format)
}

// describeFormat tells what metaData's format means, for error messages.
func describeFormat(format string) string {
	if format == "" {
		return "has no format, which means CSV"
	}
	return "says format " + quote(format)
}

// uploader checks the records of one uploaded file.
type uploader struct {
	object string
	hook   func(object string, record map[string]any) string
	keep   bool
	now    time.Time
	format string // what the file was read as: "json", "csv", or "" while unread or empty
	index  int64
	result uploadResult
}

// read consumes the file r as format: "json" (a JSON array or JSON lines),
// "csv", or "" to decide from its first byte other than a byte order mark
// or white space ('[' or '{': JSON, else CSV). Only a file that cannot be
// read as its format is an error; bad records are counted and reported.
func (u *uploader) read(r io.Reader, format string) error {
	br := bufio.NewReaderSize(r, 64<<10)
	first, err := skipBlank(br)
	if err == io.EOF {
		return nil // an empty file holds no records
	}
	if err != nil {
		return apiErrorf(http.StatusBadRequest, "Cannot read file: %v", err)
	}
	looksJSON := first == '[' || first == '{'
	if format == "" {
		format = "csv"
		if looksJSON {
			format = "json"
		}
	}
	u.format = format
	switch {
	case format == "csv" && looksJSON:
		return apiErrorf(http.StatusBadRequest, "Invalid CSV file: it looks like JSON (send metaData format json for JSON; no format means CSV)")
	case format == "csv":
		return u.readCSV(br)
	case first == '[':
		return u.readArray(br)
	case first == '{':
		return u.readLines(br)
	}
	return apiErrorf(http.StatusBadRequest, "Unsupported file: format json expects a JSON array or one object per line")
}

// skipBlank discards a UTF-8 byte order mark and white space, and returns
// the next byte without consuming it.
func skipBlank(br *bufio.Reader) (byte, error) {
	if bom, _ := br.Peek(3); bytes.Equal(bom, []byte{0xEF, 0xBB, 0xBF}) {
		_, _ = br.Discard(3)
	}
	for {
		b, err := br.ReadByte()
		if err != nil {
			return 0, err
		}
		switch b {
		case ' ', '\t', '\r', '\n':
			continue
		}
		_ = br.UnreadByte()
		return b, nil
	}
}

func (u *uploader) readArray(br *bufio.Reader) error {
	dec := json.NewDecoder(br)
	if _, err := dec.Token(); err != nil {
		return apiErrorf(http.StatusBadRequest, "Invalid JSON array: %v", err)
	}
	var raw json.RawMessage
	for dec.More() {
		if err := dec.Decode(&raw); err != nil {
			return apiErrorf(http.StatusBadRequest, "Invalid JSON array at record %d: %v", u.index, err)
		}
		u.check(raw)
	}
	if _, err := dec.Token(); err != nil {
		return apiErrorf(http.StatusBadRequest, "Invalid JSON array: %v", err)
	}
	return nil
}

func (u *uploader) readLines(br *bufio.Reader) error {
	var buf []byte
	for {
		line, tooLong, err := readLine(br, buf[:0], maxRecordBytes)
		buf = line
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return apiErrorf(http.StatusBadRequest, "Cannot read file: %v", err)
		}
		line = bytes.TrimSpace(line)
		switch {
		case tooLong:
			u.reject("", "record is larger than 1 MB", json.RawMessage("null"))
		case len(line) == 0:
		default:
			u.check(line)
		}
	}
}

// readLine reads one line into buf, keeping at most limit bytes of it; the
// rest of a longer line is skipped and reported by tooLong. It returns
// io.EOF only when no line is left.
func readLine(br *bufio.Reader, buf []byte, limit int) (line []byte, tooLong bool, err error) {
	for {
		frag, err := br.ReadSlice('\n')
		if len(buf)+len(frag) <= limit+2 { // room for "\r\n"
			buf = append(buf, frag...)
		} else {
			tooLong = true
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF && (len(buf) > 0 || tooLong):
			return buf, tooLong, nil
		case err != nil:
			return buf, tooLong, err
		}
		return buf, tooLong, nil
	}
}

// check validates one record (valid JSON) and files it as accepted or failed.
func (u *uploader) check(raw []byte) {
	if len(raw) > maxRecordBytes {
		u.reject("", "record is larger than 1 MB", json.RawMessage("null"))
		return
	}
	field, msg := validateRecord(u.object, raw, u.now)
	if msg == "record is not valid JSON" {
		u.reject(field, msg, quoteText(raw))
		return
	}
	if msg == "" && u.hook != nil {
		var m map[string]any
		if json.Unmarshal(raw, &m) == nil {
			msg = u.hook(u.object, m)
		}
	}
	if msg != "" {
		u.reject(field, msg, compact(raw))
		return
	}
	u.result.total++
	u.index++
	if u.keep {
		u.result.accepted = append(u.result.accepted, compact(raw))
	}
}

func (u *uploader) reject(field, msg string, record json.RawMessage) {
	u.result.errors = append(u.result.errors, wireRecordError{Index: u.index, Status: msg, Field: field, Record: record})
	u.result.total++
	u.result.failed++
	u.index++
}

// quoteText returns the first KiB of text as a JSON string.
func quoteText(text []byte) json.RawMessage {
	if len(text) > 1024 {
		text = text[:1024]
	}
	b, _ := json.Marshal(string(text))
	return b
}
