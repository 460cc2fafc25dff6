package mixpanel

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// MaxExportLimit is the largest Limit Mixpanel accepts on an export.
const MaxExportLimit = 100000

// dateLayout is Mixpanel's from_date/to_date format.
const dateLayout = "2006-01-02"

// ExportRequest selects the events of a raw export.
type ExportRequest struct {
	// From and To are the first and the last day of the export, both
	// inclusive; only their calendar dates (in their own location) count.
	// Mixpanel reads the dates in UTC for projects created after
	// 2023-01-01 and in the project's timezone for older ones.
	From, To time.Time
	Events   []string // optional: only these event names
	Where    string   // optional: a segmentation expression
	Limit    int      // optional: at most this many events (1 to MaxExportLimit)
	TimeInMS bool     // optional: properties.time in milliseconds
}

// query validates r and returns its query parameters.
func (r ExportRequest) query() (url.Values, error) {
	if r.From.IsZero() || r.To.IsZero() {
		return nil, errors.New("mixpanel: export: From and To are required")
	}
	from, to := r.From.Format(dateLayout), r.To.Format(dateLayout)
	if to < from {
		return nil, fmt.Errorf("mixpanel: export: To %s is before From %s", to, from)
	}
	if r.Limit < 0 || r.Limit > MaxExportLimit {
		return nil, fmt.Errorf("mixpanel: export: Limit %d out of range 0..%d", r.Limit, MaxExportLimit)
	}
	q := url.Values{"from_date": {from}, "to_date": {to}}
	if len(r.Events) > 0 {
		b, err := json.Marshal(r.Events)
		if err != nil {
			return nil, fmt.Errorf("mixpanel: export: encode events: %v", err)
		}
		q.Set("event", string(b))
	}
	if r.Where != "" {
		q.Set("where", r.Where)
	}
	if r.Limit > 0 {
		q.Set("limit", strconv.Itoa(r.Limit))
	}
	if r.TimeInMS {
		q.Set("time_in_ms", "true")
	}
	return q, nil
}

// Export starts a raw event export (GET /api/2.0/export) and returns its
// body: JSON lines, one event per line, decompressed when Mixpanel gzipped
// them (the client asks for gzip). Nothing is buffered: read the stream
// with NewRecordReader, or copy it as it is, and close it. Mixpanel applies
// no de-duplication to exports.
//
// The request is retried (see the package documentation) until a 2xx
// answer arrives; once the body is handed over, a broken stream surfaces as
// a read error (io.ErrUnexpectedEOF or the transport's error) and the
// caller decides whether to export the range again. Every attempt counts
// toward the export rate limit of 60 queries an hour.
func (c *Client) Export(ctx context.Context, r ExportRequest) (io.ReadCloser, error) {
	q, err := r.query()
	if err != nil {
		return nil, err
	}
	req, err := c.newRequest(ctx, http.MethodGet, c.export, exportPath, q, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain, application/x-ndjson, application/json")
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := c.bareDo(req, resend, false)
	if err != nil {
		return nil, err
	}
	return c.exportBody(ctx, resp)
}

// exportBody unwraps a gzip-encoded export body.
func (c *Client) exportBody(ctx context.Context, resp *http.Response) (io.ReadCloser, error) {
	body := &exportBody{ctx: ctx, raw: resp.Body, r: resp.Body}
	if strings.EqualFold(strings.TrimSpace(resp.Header.Get("Content-Encoding")), "gzip") {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			drainAndClose(resp.Body)
			if errors.Is(err, io.EOF) {
				// An empty body with Content-Encoding: gzip: no events.
				return io.NopCloser(strings.NewReader("")), nil
			}
			return nil, fmt.Errorf("mixpanel: GET %s: open gzip stream: %w", exportPath, err)
		}
		body.r = zr
	}
	return body, nil
}

// exportBody reads the (decompressed) export stream; a read error after
// the context ended reports the context's error.
type exportBody struct {
	ctx context.Context
	raw io.ReadCloser
	r   io.Reader
}

func (b *exportBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		if ctxErr := b.ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
		err = fmt.Errorf("mixpanel: GET %s: read: %w", exportPath, unwrapURLError(err))
	}
	return n, err
}

// Close closes the response body without reading the rest of it.
func (b *exportBody) Close() error { return b.raw.Close() }
