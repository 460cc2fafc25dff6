package ce

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
)

// UploadOptions configures Upload.
type UploadOptions struct {
	// FileName is the file name of the "file" part (default
	// "<object>.json", or "<object>.csv" for Format "csv").
	FileName string
	// Format is the metaData "format": "json" (the default; records are
	// JSON lines or a JSON array) or "csv" (sent without a format key, as
	// CE expects for CSV).
	Format string
	// CallbackURL, when set, is sent as Elements-Async-Callback-Url. It may
	// carry a token: it never appears in errors or logs.
	CallbackURL string
	// CallbackPayload, when non-nil, is sent in metaData as
	// "callback-payload"; CE echoes it in the callback.
	CallbackPayload any
}

// errUploadAborted unblocks the multipart writer once the request is over.
var errUploadAborted = errors.New("ce: upload request ended")

// Upload creates a bulk upload job from r: POST hubs/general/bulk/{object}
// as multipart/form-data with a "metaData" part (a JSON string with
// "format" and optional "callback-payload") followed by a "file" part
// holding r's bytes.
//
// The body is streamed: a goroutine writes the multipart form into an
// io.Pipe while the request reads it, so memory stays flat whatever r's
// size. Upload waits for that goroutine before returning, so none outlives
// the call; if r's Read blocks, Upload returns only after it does. An error
// from r is returned (wrapped, errors.Is works) and the request is aborted.
//
// Upload is never retried, because r cannot be replayed: retry the whole
// upload at a higher level.
func (c *Client) Upload(ctx context.Context, object string, r io.Reader, opts UploadOptions) (*Job, error) {
	if err := checkSegment("object", object); err != nil {
		return nil, err
	}
	if r == nil {
		return nil, errors.New("ce: upload: nil reader")
	}
	if err := checkCallbackURL(opts.CallbackURL); err != nil {
		return nil, fmt.Errorf("ce: upload %s: %w", object, err)
	}
	format := strings.ToLower(opts.Format)
	if format == "" {
		format = "json"
	}
	contentType, metaFormat, ext := "application/octet-stream", format, format
	switch format {
	case "json":
		contentType = "application/json"
	case "csv":
		contentType, metaFormat = "text/csv", ""
	}
	fileName := opts.FileName
	if fileName == "" {
		fileName = object + "." + ext
	}
	if strings.ContainsAny(fileName, "\r\n\x00") {
		return nil, fmt.Errorf("ce: upload %s: invalid file name", object)
	}
	meta, err := json.Marshal(struct {
		Format          string `json:"format,omitempty"`
		CallbackPayload any    `json:"callback-payload,omitempty"`
	}{metaFormat, opts.CallbackPayload})
	if err != nil {
		return nil, fmt.Errorf("ce: upload %s: encode metaData: %v", object, err)
	}

	pr, pw := io.Pipe()
	req, err := c.newRequest(ctx, http.MethodPost, c.bulkPath(object), pr)
	if err != nil {
		return nil, err
	}
	mw := multipart.NewWriter(pw)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.ContentLength = -1 // unknown: chunked, and no probing read of the body
	if opts.CallbackURL != "" {
		req.Header.Set(callbackHeader, opts.CallbackURL)
	}

	src := &sourceReader{r: r}
	done := make(chan error, 1)
	go func() {
		err := writeUploadForm(mw, meta, fileName, contentType, src)
		pw.CloseWithError(err) // nil closes with io.EOF
		done <- err
	}()

	resp, err := c.bareDo(req)
	pr.CloseWithError(errUploadAborted) // unblock the writer if the transport stopped reading
	werr := <-done

	if src.err != nil {
		if resp != nil {
			drainAndClose(resp.Body)
		}
		return nil, fmt.Errorf("ce: upload %s: read data: %w", object, src.err)
	}
	if err != nil {
		return nil, err
	}
	defer drainAndClose(resp.Body)
	path := c.sanitizePath(req.URL)
	if werr != nil {
		return nil, fmt.Errorf("ce: POST %s: answered %d before the upload was complete", path, resp.StatusCode)
	}
	job := new(Job)
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxJSONResponse)).Decode(job); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
		return nil, fmt.Errorf("ce: POST %s: read response: %w", path, err)
	}
	if job.ID == "" {
		return nil, fmt.Errorf("ce: POST %s: response has no job id", path)
	}
	return c.redactJob(job), nil
}

var quoteEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

// writeUploadForm writes the metaData part, then the file part streamed from src.
func writeUploadForm(mw *multipart.Writer, meta []byte, fileName, contentType string, src io.Reader) error {
	if err := mw.WriteField("metaData", string(meta)); err != nil {
		return err
	}
	h := make(textproto.MIMEHeader)
	h.Set("Content-Disposition", `form-data; name="file"; filename="`+quoteEscaper.Replace(fileName)+`"`)
	h.Set("Content-Type", contentType)
	part, err := mw.CreatePart(h)
	if err != nil {
		return err
	}
	if _, err := io.Copy(part, src); err != nil {
		return err
	}
	return mw.Close()
}

// sourceReader remembers the first error of the caller's reader, to tell
// it apart from pipe errors.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}
