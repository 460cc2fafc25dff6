package httpapi

import (
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestParseBaseURL(t *testing.T) {
	tests := []struct {
		in, want, wantErr string
	}{
		{"https://api.example.com/x", "https://api.example.com/x/", ""},
		{"http://127.0.0.1:9/", "http://127.0.0.1:9/", ""},
		{"", "", "base URL is required"},
		{"ftp://h/", "", `scheme "ftp"`},
		{"https:///p", "", "no host"},
		{"https://u:secret@h/", "", "user info"},
		{"https://h/?a=1", "", "query or fragment"},
		{"https://h/#f", "", "query or fragment"},
		{"https://exa mple.com/", "", "invalid base URL"},
	}
	for _, tt := range tests {
		u, err := ParseBaseURL(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseBaseURL(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("ParseBaseURL(%q) error repeats the URL: %v", tt.in, err)
			}
			continue
		}
		if err != nil || u.String() != tt.want {
			t.Errorf("ParseBaseURL(%q) = %v, %v; want %s", tt.in, u, err, tt.want)
		}
	}
}

func TestTextHelpers(t *testing.T) {
	if got := RawText(json.RawMessage(`"x"`)) + RawText(json.RawMessage(`{ "a" : 1 }`)) + RawText(nil) + RawText(json.RawMessage(`null`)); got != `x{"a":1}` {
		t.Errorf("RawText = %q", got)
	}
	if got := FirstLine("\n  first line\nsecond", 100); got != "first line" {
		t.Errorf("FirstLine = %q", got)
	}
	if got := FirstLine("héllo", 2); got != "h..." {
		t.Errorf("FirstLine cut = %q", got)
	}
	if got := StatusLine("mixpanel", "POST", "import", 413); got != "mixpanel: POST import: 413 Request Entity Too Large" {
		t.Errorf("StatusLine = %q", got)
	}
	if got := StatusLine("ce", "GET", "x", 599); got != "ce: GET x: 599" {
		t.Errorf("StatusLine = %q", got)
	}
}

func TestTransientTransportError(t *testing.T) {
	refused := &net.OpError{Op: "dial", Err: errors.New("connection refused")}
	if !TransientTransportError(refused) {
		t.Error("a refused connection is not transient")
	}
	if TransientTransportError(&url.Error{Op: "Get", URL: "x", Err: errors.New(`unsupported protocol scheme ""`)}) {
		t.Error("a bad scheme is transient")
	}
	if got := UnwrapURLError(&url.Error{Op: "Get", URL: "https://h/?token=s", Err: refused}); got != refused {
		t.Errorf("UnwrapURLError = %v", got)
	}
}

func TestDoubling(t *testing.T) {
	for _, tc := range []struct {
		lo, hi time.Duration
		n      int
		want   time.Duration
	}{
		{2 * time.Second, time.Minute, 0, 2 * time.Second},
		{2 * time.Second, time.Minute, 4, 32 * time.Second},
		{2 * time.Second, time.Minute, 5, time.Minute}, // 64 s capped
		{2 * time.Second, time.Minute, 61, time.Minute},
		{2 * time.Second, time.Minute, 1000, time.Minute}, // no overflow
		{2 * time.Second, time.Minute, -1, time.Minute},
		{0, time.Minute, 3, 0},
		{time.Second, 0, 2, time.Second}, // never below lo
	} {
		if got := Doubling(tc.lo, tc.hi, tc.n); got != tc.want {
			t.Errorf("Doubling(%v, %v, %d) = %v, want %v", tc.lo, tc.hi, tc.n, got, tc.want)
		}
	}
}
