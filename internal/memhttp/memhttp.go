// Package memhttp serves an http.Handler in memory, without a network, as
// an http.RoundTripper: the emulators' (cetest, mptest) way into tests under
// testing/synctest, which forbids real network.
package memhttp

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
)

// Transport returns an http.RoundTripper that serves requests with h: the
// request body is streamed to the handler and the response body streamed
// back through a pipe, so neither is buffered whole. A handler that panics
// with http.ErrAbortHandler (a cut connection) fails the body read with
// io.ErrUnexpectedEOF, as over a real connection; the request's context
// ending fails the call or the body read with its error.
func Transport(h http.Handler) http.RoundTripper { return transport{h} }

type transport struct{ h http.Handler }

func (t transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	sreq := req.Clone(ctx)
	sreq.RequestURI = req.URL.RequestURI()
	sreq.RemoteAddr = "192.0.2.1:1234"
	sreq.Host = req.URL.Host
	if sreq.Body == nil {
		sreq.Body = http.NoBody
	}
	sreq.Proto, sreq.ProtoMajor, sreq.ProtoMinor = "HTTP/1.1", 1, 1

	pr, pw := io.Pipe()
	rw := &pipeWriter{header: http.Header{}, pw: pw, ready: make(chan struct{})}
	go func() {
		defer sreq.Body.Close()
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					rw.fail(io.ErrUnexpectedEOF)
				} else {
					rw.fail(fmt.Errorf("memhttp: handler panic: %v", v))
				}
				return
			}
			rw.finish()
		}()
		t.h.ServeHTTP(rw, sreq)
	}()

	select {
	case <-rw.ready:
	case <-ctx.Done():
		pr.CloseWithError(ctx.Err())
		return nil, ctx.Err()
	}
	if rw.headerErr != nil {
		pr.Close()
		return nil, rw.headerErr
	}
	stop := context.AfterFunc(ctx, func() { pr.CloseWithError(ctx.Err()) })
	resp := &http.Response{
		Status:        strconv.Itoa(rw.code) + " " + http.StatusText(rw.code),
		StatusCode:    rw.code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        rw.sent,
		Body:          &pipeBody{pr: pr, stop: stop},
		ContentLength: -1,
		Request:       req,
	}
	if n, err := strconv.ParseInt(rw.sent.Get("Content-Length"), 10, 64); err == nil {
		resp.ContentLength = n
	}
	return resp, nil
}

// pipeWriter is the handler's side of an in-memory response.
type pipeWriter struct {
	header    http.Header
	sent      http.Header
	code      int
	pw        *io.PipeWriter
	once      sync.Once
	ready     chan struct{}
	headerErr error // set before ready is closed when no header was sent
}

func (w *pipeWriter) Header() http.Header { return w.header }

func (w *pipeWriter) WriteHeader(code int) {
	if code < 200 {
		return // informational answers are not relayed
	}
	w.once.Do(func() {
		w.code = code
		w.sent = w.header.Clone()
		close(w.ready)
	})
}

func (w *pipeWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.pw.Write(p)
}

// Flush sends the header; the pipe has no buffer to flush.
func (w *pipeWriter) Flush() { w.WriteHeader(http.StatusOK) }

func (w *pipeWriter) finish() {
	w.WriteHeader(http.StatusOK)
	w.pw.Close()
}

func (w *pipeWriter) fail(err error) {
	w.once.Do(func() {
		w.headerErr = err
		close(w.ready)
	})
	w.pw.CloseWithError(err)
}

// pipeBody is the client's side of an in-memory response.
type pipeBody struct {
	pr   *io.PipeReader
	stop func() bool
}

func (b *pipeBody) Read(p []byte) (int, error) { return b.pr.Read(p) }

func (b *pipeBody) Close() error {
	b.stop()
	return b.pr.Close()
}
