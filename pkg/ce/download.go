package ce

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
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
	req, err := c.newRequest(ctx, http.MethodGet, c.bulkPath(jobID, object), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", o.accept)
	resp, err := c.bareDo(req)
	if err != nil {
		return nil, err
	}
	return &downloadBody{
		ctx:  ctx,
		body: resp.Body,
		want: resp.ContentLength,
		what: fmt.Sprintf("ce: download job %s %s", jobID, object),
	}, nil
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
