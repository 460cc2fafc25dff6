package exporter

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseObjects(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr string
	}{
		{"", []string{"activities", "users"}, ""},
		{" users , activities ", []string{"users", "activities"}, ""},
		{"activities,events,activities", nil, `unknown object "events"`},
		{"activities,activities", nil, `"activities" listed twice`},
		{" , ", nil, "want activities and/or users"},
	} {
		got, err := ParseObjects(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseObjects(%q) error = %v, want it to mention %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseObjects(%q): %v", tc.in, err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseObjects(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestParseScalars(t *testing.T) {
	if err := ParseDay("2026-11-25"); err != nil {
		t.Errorf("ParseDay(2026-11-25) = %v", err)
	}
	if err := ParseDay("yesterday"); err == nil {
		t.Errorf("ParseDay(yesterday) = nil error")
	}
	if loc, err := ParseTimezone(""); err != nil || loc != time.UTC {
		t.Errorf("ParseTimezone(\"\") = %v, %v; want UTC", loc, err)
	}
	for _, bad := range []string{"Local", "Mars/Olympus"} {
		if _, err := ParseTimezone(bad); err == nil {
			t.Errorf("ParseTimezone(%q) = nil error", bad)
		}
	}
	if d, err := ParseLag(""); err != nil || d != DefaultLag {
		t.Errorf("ParseLag(\"\") = %v, %v", d, err)
	}
	if d, err := ParseLag("0s"); err != nil || d != 0 {
		t.Errorf("ParseLag(0s) = %v, %v", d, err)
	}
	if _, err := ParseLag("-1h"); err == nil {
		t.Errorf("ParseLag(-1h) = nil error")
	}
	for in, want := range map[string]int{"": DefaultMaxJobs, "1": 1, "60": 60} {
		if n, err := ParseMaxJobs(in); err != nil || n != want {
			t.Errorf("ParseMaxJobs(%q) = %d, %v; want %d", in, n, err, want)
		}
	}
	for _, bad := range []string{"0", "61", "six"} {
		if _, err := ParseMaxJobs(bad); err == nil {
			t.Errorf("ParseMaxJobs(%q) = nil error", bad)
		}
	}
}
