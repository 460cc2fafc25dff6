package mixpanel

import (
	"encoding/json"
	"math"
	"testing"
	"time"
)

func TestEventTime(t *testing.T) {
	const sec = 1618716477 // 2021-04-18T03:27:57Z
	tests := []struct {
		in     any
		want   int64
		reason string
	}{
		// Numbers, by size.
		{json.Number("1618716477"), sec, ""},
		{json.Number("1618716477000"), sec, ""},       // milliseconds
		{json.Number("1618716477999"), sec, ""},       // rounds down
		{json.Number("1618716477123456"), sec, ""},    // microseconds
		{json.Number("1618716477123456789"), sec, ""}, // nanoseconds
		{json.Number("1618716477.9"), sec, ""},        // fraction dropped
		{json.Number("1618716477123.9"), sec, ""},     // fractional milliseconds
		{json.Number("1.618716477e9"), sec, ""},       // exponent
		{json.Number("1.618716477e12"), sec, ""},      // exponent, milliseconds
		{json.Number("99999999999"), 99999999999, ""}, // largest seconds: year 5138
		{json.Number("100000000000"), 100000000, ""},  // smallest milliseconds: 1973
		{json.Number("-5"), -5, ""},                   // before 1971: left to checkTime
		{json.Number("-1.5"), -2, ""},                 // floor
		{json.Number("0"), 0, ""},                     //
		{json.Number("99999999999999999999"), 0, "99999999999999999999 is too large to be a time"},
		{json.Number("1e400"), 0, "+Inf is too large to be a time"},
		{json.Number("abc"), 0, `"abc" is not a valid number`},
		{float64(sec), sec, ""},
		{float64(sec) * 1000, sec, ""},
		{1618716477.5, sec, ""},
		{math.NaN(), 0, "is not a number"},
		{math.Inf(1), 0, "+Inf is too large to be a time"},
		{math.Inf(-1), -1e18, ""},
		{int(sec), sec, ""},
		{int64(sec) * 1000, sec, ""},
		// Numeric strings.
		{"1618716477", sec, ""},
		{" 1618716477000 ", sec, ""},
		{"1618716477.25", sec, ""},
		{"+1618716477", sec, ""},
		// ISO-8601 / RFC 3339 with a timezone.
		{"2021-04-18T03:27:57Z", sec, ""},
		{"2021-04-18T03:27:57.123456Z", sec, ""},
		{"2021-04-18T05:27:57+02:00", sec, ""},
		{"2021-04-18T05:27:57+0200", sec, ""},
		{"2021-04-18T05:27:57+02", sec, ""},
		{"2021-04-17T22:27:57-05:00", sec, ""},
		{"2021-04-18 03:27:57Z", sec, ""},
		{"2021-04-18 03:27:57.5+00:00", sec, ""},
		{"2021-04-18t03:27:57z", sec, ""},
		{"2021-04-18 03:27:57 UTC", sec, ""},
		{"2021-04-18T03:27:57 +00:00", sec, ""},
		{"2021-04-18T03:27Z", sec - 57, ""},
		// Without a timezone, or not a time at all.
		{"2021-04-18T03:27:57", 0, `"2021-04-18T03:27:57" has no timezone; add Z for UTC or an offset such as +02:00`},
		{"2021-04-18 03:27:57", 0, `"2021-04-18 03:27:57" has no timezone; add Z for UTC or an offset such as +02:00`},
		{"2021-04-18T03:27", 0, `"2021-04-18T03:27" has no timezone; add Z for UTC or an offset such as +02:00`},
		{"2021-04-18", 0, `"2021-04-18" has no timezone; add Z for UTC or an offset such as +02:00`},
		{"2021-04-18 03:27:57 PST", 0, `"2021-04-18 03:27:57 PST" is not a number or an ISO-8601 date-time`},
		{"18/04/2021", 0, `"18/04/2021" is not a number or an ISO-8601 date-time`},
		{"Sun, 18 Apr 2021 03:27:57 GMT", 0, `"Sun, 18 Apr 2021 03:27:57 GMT" is not a number or an ISO-8601 date-time`},
		{"2021-13-01T00:00:00Z", 0, `"2021-13-01T00:00:00Z" is not a number or an ISO-8601 date-time`},
		{"yesterday", 0, `"yesterday" is not a number or an ISO-8601 date-time`},
		{"", 0, "is empty"},
		{"  ", 0, "is empty"},
		{"NaN", 0, "is not a number"},
		// Other types.
		{nil, 0, "is null"},
		{true, 0, "must be a number of seconds or milliseconds since the epoch, or an ISO-8601 date-time; got a boolean"},
		{map[string]any{}, 0, "must be a number of seconds or milliseconds since the epoch, or an ISO-8601 date-time; got an object"},
		{[]any{}, 0, "must be a number of seconds or milliseconds since the epoch, or an ISO-8601 date-time; got an array"},
	}
	for _, tc := range tests {
		got, reason := eventTime(tc.in)
		if reason != tc.reason || (reason == "" && got != tc.want) {
			t.Errorf("eventTime(%#v) = %d, %q; want %d, %q", tc.in, got, reason, tc.want, tc.reason)
		}
	}
}

func TestCheckTime(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 500e6, time.UTC)
	tests := []struct {
		sec    int64
		reason string
	}{
		{31536000, ""}, // 1971-01-01T00:00:00Z
		{31535999, "1970-12-31T23:59:59Z is before 1971-01-01T00:00:00Z"},
		{-5, "1969-12-31T23:59:55Z is before 1971-01-01T00:00:00Z"},
		{-1e18, "-1000000000000000000 seconds is before 1971-01-01T00:00:00Z"},
		{now.Unix(), ""},
		{now.Add(time.Hour).Unix(), ""}, // 13:00:00, not after 13:00:00.5
		{now.Add(time.Hour).Unix() + 1, "2026-11-26T13:00:01Z is more than 1 hour in the future (now is 2026-11-26T12:00:00Z)"},
	}
	for _, tc := range tests {
		if got := checkTime(tc.sec, now); got != tc.reason {
			t.Errorf("checkTime(%d) = %q, want %q", tc.sec, got, tc.reason)
		}
	}
}
