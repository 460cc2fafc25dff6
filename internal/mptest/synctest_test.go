package mptest_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cebulk/cebulk/internal/mptest"
)

// TestTransportInSynctest drives the emulator in memory inside a synctest
// bubble: an hour-long injected delay costs no real time, a held call ends
// with its client's deadline, and a cut export fails its body read.
func TestTransportInSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := mptest.NewFake(mptest.Options{})
		first := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -1)
		f.SetGenerator(mptest.SampleEvents(1, 500, 50, first, first.AddDate(0, 0, 1)))
		client := &http.Client{Transport: f.Transport()}
		day := first.Format("2006-01-02")
		export := func(ctx context.Context) (*http.Response, error) {
			req, _ := http.NewRequestWithContext(ctx, "GET", mptest.InMemoryBaseURL+"/api/2.0/export?project_id="+
				mptest.DefaultProjectID+"&from_date="+day+"&to_date="+day, nil)
			req.Header.Set("Authorization", saAuth)
			return client.Do(req)
		}

		f.Fail(mptest.RouteExport, mptest.Fault{Delay: time.Hour}) // held an hour, then served
		began := time.Now()
		resp, err := export(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || strings.Count(string(body), "\n") != 500 {
			t.Fatalf("delayed export = %d, %d lines, %v", resp.StatusCode, strings.Count(string(body), "\n"), err)
		}
		if waited := time.Since(began); waited != time.Hour {
			t.Errorf("the delayed export took %v of bubble time, want 1h", waited)
		}

		f.Fail(mptest.RouteExport, mptest.Fault{Delay: time.Hour})
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		_, err = export(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("held export with a 1m deadline: err = %v, want a deadline error", err)
		}

		f.CutNextExport(1000)
		resp, err = export(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if !errors.Is(err, io.ErrUnexpectedEOF) || len(body) != 1000 {
			t.Errorf("cut export: read %d bytes, err %v; want 1000 and io.ErrUnexpectedEOF", len(body), err)
		}
	})
}
