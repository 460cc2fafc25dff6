package ce

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
)

// Accept values for Download.
const (
	AcceptJSON  = "application/json"  // a JSON array or JSON lines; see NewRecordReader
	AcceptJSONL = "application/jsonl" // JSON lines
	AcceptCSV   = "text/csv"          // CSV with a header row; see NewCSVRecordReader
)

// DownloadOption configures Download.
type DownloadOption func(*downloadOptions)

type downloadOptions struct {
	accept string
	offset int64
	ranges *RangeResult
}

// DownloadSettings is what a list of DownloadOptions asks for, for code
// that serves Download-shaped calls itself (another backend, a test
// double): the Accept media type ("" for the default), the byte offset, and
// where to report how the offset was served (nil when nobody asked).
type DownloadSettings struct {
	Accept string
	Offset int64
	Ranges *RangeResult
}

// ReadDownloadOptions applies opts and returns what they ask for.
func ReadDownloadOptions(opts ...DownloadOption) DownloadSettings {
	var o downloadOptions
	for _, opt := range opts {
		opt(&o)
	}
	return DownloadSettings{Accept: o.accept, Offset: o.offset, Ranges: o.ranges}
}

// RangeResult reports how a download from an offset (WithOffset) was
// served.
type RangeResult struct {
	// Ranged is true when CE answered the range (206 with a Content-Range
	// starting at the offset); false when the file was downloaded from its
	// start and the first offset bytes were skipped.
	Ranged bool
}

// WithOffset makes Download return the result file from byte offset on:
// it asks CE for "Range: bytes=<offset>-" and accepts the answer only when
// it is 206 Partial Content with a Content-Range that starts at offset;
// any other answer (200, 416, a 206 for another range) is dropped and the
// file is downloaded from its start, its first offset bytes read and
// discarded. When res is not nil it reports which happened. An offset of 0
// is an ordinary download.
func WithOffset(offset int64, res *RangeResult) DownloadOption {
	return func(o *downloadOptions) {
		o.offset = max(offset, 0)
		o.ranges = res
	}
}

// WithAccept sets the Accept header of a download (default
// "application/json"). It must match the job's format; see AcceptCSV and
// AcceptJSONL.
func WithAccept(mediaType string) DownloadOption {
	return func(o *downloadOptions) {
		if mediaType != "" {
			o.accept = mediaType
		}
	}
}

// Download streams the result file of a completed job: GET
// hubs/general/bulk/{id}/{object}. The caller must close the returned body.
//
// Download retries (see the package documentation) only until the response
// headers arrive; once the body is handed out nothing is retried. The body
// never ends in a silent short read: a connection reset, an unexpected EOF
// or fewer bytes than the Content-Length announced make Read return an
// error (wrapping the cause, for example io.ErrUnexpectedEOF) instead of
// io.EOF.
func (c *Client) Download(ctx context.Context, jobID, object string, opts ...DownloadOption) (io.ReadCloser, error) {
	if err := checkSegment("job id", jobID); err != nil {
		return nil, err
	}
	if err := checkSegment("object", object); err != nil {
		return nil, err
	}
	o := downloadOptions{accept: AcceptJSON}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	what := fmt.Sprintf("ce: download job %s %s", jobID, object)
	get := func(offset int64) (*http.Response, error) {
		req, err := c.newRequest(ctx, http.MethodGet, c.bulkPath(jobID, object), nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", o.accept)
		if offset > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
		}
		return c.bareDo(req)
	}
	if o.offset > 0 {
		resp, err := get(o.offset)
		if err == nil && resp.StatusCode == http.StatusPartialContent && rangeStarts(resp.Header.Get("Content-Range"), o.offset) {
			if o.ranges != nil {
				o.ranges.Ranged = true
			}
			return &downloadBody{ctx: ctx, body: resp.Body, want: resp.ContentLength, what: what}, nil
		}
		if err == nil {
			resp.Body.Close()
		} else if ctx.Err() != nil {
			return nil, err
		}
	}
	resp, err := get(0)
	if err != nil {
		return nil, err
	}
	body := &downloadBody{ctx: ctx, body: resp.Body, want: resp.ContentLength, what: what}
	if o.offset > 0 {
		if o.ranges != nil {
			o.ranges.Ranged = false
		}
		if _, err := io.CopyN(io.Discard, body, o.offset); err != nil {
			body.Close()
			if err == io.EOF {
				err = fmt.Errorf("%s: the file has fewer than %d bytes: %w", what, o.offset, io.ErrUnexpectedEOF)
			}
			return nil, err
		}
	}
	return body, nil
}

// rangeStarts reports whether a Content-Range value ("bytes 10-99/100" or
// "bytes 10-99/*") describes a range starting at offset.
func rangeStarts(v string, offset int64) bool {
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return false
	}
	span, _, ok := strings.Cut(rest, "/")
	if !ok {
		return false
	}
	first, last, ok := strings.Cut(span, "-")
	if !ok {
		return false
	}
	f, err1 := strconv.ParseInt(first, 10, 64)
	l, err2 := strconv.ParseInt(last, 10, 64)
	return err1 == nil && err2 == nil && f == offset && l >= f
}

// downloadBody turns every way a body can end early into an error.
type downloadBody struct {
	ctx  context.Context
	body io.ReadCloser
	want int64 // Content-Length, or -1 when unknown
	what string

	n      int64
	err    error       // sticky
	closed atomic.Bool // Close may run while a Read is blocked
}

func (d *downloadBody) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if d.closed.Load() {
		return 0, errors.New(d.what + ": read after close")
	}
	n, err := d.body.Read(p)
	d.n += int64(n)
	switch {
	case err == nil:
		if d.want >= 0 && d.n > d.want {
			d.err = fmt.Errorf("%s: body longer than its Content-Length %d", d.what, d.want)
			return n, d.err
		}
		return n, nil
	case err == io.EOF:
		if d.want >= 0 && d.n != d.want {
			d.err = fmt.Errorf("%s: truncated after %d of %d bytes: %w", d.what, d.n, d.want, io.ErrUnexpectedEOF)
			return n, d.err
		}
		d.err = io.EOF
		return n, io.EOF
	default:
		if ctxErr := d.ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
		d.err = fmt.Errorf("%s: truncated after %d bytes: %w", d.what, d.n, unwrapURLError(err))
		return n, d.err
	}
}

// Close closes the body without draining it: the rest of a large file is
// not read just to reuse the connection.
func (d *downloadBody) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	return d.body.Close()
}
