package exporter

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/cebulk/cebulk/pkg/ce"
)

func TestEventTime(t *testing.T) {
	tests := []struct {
		rec  string
		want time.Time
		ok   bool
	}{
		{`{"event":"a","properties":{"time":1764028800}}`, time.Unix(1764028800, 0), true},
		{`{"event":"a","properties":{"time":1764028800123}}`, time.UnixMilli(1764028800123), true},
		{`{"event":"a","properties":{"time":1764028800.5}}`, time.Unix(1764028800, 5e8), true},
		{`{"event":"a","properties":{"time":"1764028800"}}`, time.Unix(1764028800, 0), true},
		{`{"event":"a","properties":{"time":"2025-11-25T00:00:00Z"}}`, time.Unix(1764028800, 0), true},
		{` { "properties" : { "x" : [1, {"time": 5}], "time" : 1764028800 } } `, time.Unix(1764028800, 0), true},
		{`{"properties":{"t\"ime":1,"time":1764028800},"event":"x"}`, time.Unix(1764028800, 0), true},
		{`{"properties":{"\u0074ime":1764028800}}`, time.Unix(1764028800, 0), true},
		{`{"properties":{"time":1},"properties":{"time":1764028800}}`, time.Unix(1764028800, 0), true},
		{`{"event":"{\"properties\":{\"time\":1}}","properties":{"time":1764028800}}`, time.Unix(1764028800, 0), true},
		{`{"event":"a","properties":{"distinct_id":"x"}}`, time.Time{}, false},
		{`{"event":"a","time":1764028800}`, time.Time{}, false},
		{`{"properties":{"time":null}}`, time.Time{}, false},
		{`{"properties":{"time":"soon"}}`, time.Time{}, false},
		{`{"properties":[1,2]}`, time.Time{}, false},
		{`{"properties":{"time":`, time.Time{}, false},
	}
	for _, tc := range tests {
		got, ok := eventTime([]byte(tc.rec))
		if ok != tc.ok || !got.Equal(tc.want) {
			t.Errorf("eventTime(%s) = %v, %v; want %v, %v", tc.rec, got, ok, tc.want, tc.ok)
		}
	}
}

// TestEventTimeOfGeneratedActivities checks the scanner against the times
// the emulator generated.
func TestEventTimeOfGeneratedActivities(t *testing.T) {
	from := ts("2026-03-08T00:00:00Z")
	n := 0
	cetest.SampleActivities(3, 2000, from, from.Add(48*time.Hour)).Records(func(r cetest.Record) bool {
		n++
		if got, ok := eventTime(r.JSON); !ok || !got.Equal(r.Time) {
			t.Errorf("eventTime(%s) = %v, %v; want %v", r.JSON, got, ok, r.Time)
			return false
		}
		return true
	})
	if n != 2000 {
		t.Errorf("checked %d records, want 2000", n)
	}
}

func gunzipLines(t testing.TB, b []byte) []string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("gzip.NewReader: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	s := strings.TrimSuffix(string(out), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestEncoder(t *testing.T) {
	from, to := ts("2025-11-25T00:00:00Z"), ts("2025-11-26T00:00:00Z")
	in := `[{"event":"before","properties":{"time":1764028799}},
{"event":"first","properties":{"time":1764028800}},
{
  "event": "pretty",
  "properties": {"time": 1764072000, "note": "a b"}
},
{"event":"ms","properties":{"time":1764115199999}},
{"event":"end","properties":{"time":1764115200}},
{"event":"no time","properties":{}}]`
	enc := &encoder{from: from, to: to, want: 6, sum: sha256.New()}
	var out bytes.Buffer
	if err := enc.encode(strings.NewReader(in), &out); err != nil {
		t.Fatalf("encode: %v", err)
	}
	want := []string{
		`{"event":"first","properties":{"time":1764028800}}`,
		`{"event":"pretty","properties":{"time":1764072000,"note":"a b"}}`,
		`{"event":"ms","properties":{"time":1764115199999}}`,
	}
	if diff := cmp.Diff(want, gunzipLines(t, out.Bytes())); diff != "" {
		t.Errorf("encoded records mismatch (-want +got):\n%s", diff)
	}
	if enc.records != 3 || enc.outOfWindow != 3 {
		t.Errorf("records, outOfWindow = %d, %d; want 3, 3", enc.records, enc.outOfWindow)
	}
	if enc.bytes != int64(out.Len()) {
		t.Errorf("bytes = %d, want %d", enc.bytes, out.Len())
	}
	if sum := sha256.Sum256(out.Bytes()); !bytes.Equal(enc.sum.Sum(nil), sum[:]) {
		t.Errorf("sha256 does not match the output")
	}
	if enc.downloaded != int64(len(in)) {
		t.Errorf("downloaded = %d, want %d", enc.downloaded, len(in))
	}
}

func TestEncoderKeepsEverySnapshotRecord(t *testing.T) {
	in := "{\"$distinct_id\":\"u1\"}\n{\"$distinct_id\":\"u2\",\"$properties\":{}}\n"
	enc := &encoder{all: true, want: 2, sum: sha256.New()}
	var out bytes.Buffer
	if err := enc.encode(strings.NewReader(in), &out); err != nil {
		t.Fatalf("encode: %v", err)
	}
	want := []string{`{"$distinct_id":"u1"}`, `{"$distinct_id":"u2","$properties":{}}`}
	if diff := cmp.Diff(want, gunzipLines(t, out.Bytes())); diff != "" {
		t.Errorf("encoded records mismatch (-want +got):\n%s", diff)
	}
}

func TestEncoderFailures(t *testing.T) {
	tests := []struct {
		name string
		in   io.Reader
		want int64
		is   error
	}{
		{"array cut short", strings.NewReader(`[{"properties":{"time":1}},{"prop`), 0, io.ErrUnexpectedEOF},
		{"not an object", strings.NewReader(`[{"properties":{"time":1}},42]`), 0, nil},
		{"fewer records than CE counted", strings.NewReader(`[{"properties":{"time":1}}]`), 2, io.ErrUnexpectedEOF},
		{"read error", io.MultiReader(strings.NewReader(`[{"a":1},`), iotestErrReader{}), 0, errBroken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			enc := &encoder{all: true, want: tc.want, sum: sha256.New()}
			err := enc.encode(tc.in, io.Discard)
			if err == nil {
				t.Fatal("encode() = nil, want an error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("encode() = %v, want an error wrapping %v", err, tc.is)
			}
			var de *ce.DecodeError
			if tc.want == 0 && !errors.As(err, &de) {
				t.Errorf("encode() = %v, want a *ce.DecodeError", err)
			}
		})
	}
}

var errBroken = errors.New("connection reset")

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errBroken }
