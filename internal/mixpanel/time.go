package mixpanel

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// minTime is the earliest event time Mixpanel accepts: 1971-01-01T00:00:00Z.
var minTime = time.Date(1971, 1, 1, 0, 0, 0, 0, time.UTC)

// Epoch numbers are told apart by size: below 1e11 they are seconds (1e11
// seconds is the year 5138), below 1e14 milliseconds, below 1e17
// microseconds, above that nanoseconds. Each unit's range starts where the
// smaller unit's values would lie beyond the year 5000, so no real time is
// ambiguous.
const (
	msFrom = 1e11
	usFrom = 1e14
	nsFrom = 1e17
)

// zoned are the date-time layouts accepted; each needs a timezone.
// time.Parse also takes fractional seconds after the seconds in all of
// them.
var zoned = []string{
	"2006-01-02T15:04:05Z07:00",
	"2006-01-02T15:04:05Z0700",
	"2006-01-02T15:04:05Z07",
	"2006-01-02T15:04Z07:00",
	"2006-01-02T15:04:05 Z07:00",
	"2006-01-02T15:04:05 Z0700",
}

// unzoned are layouts that parse but lack a timezone: recognised only to
// say so.
var unzoned = []string{
	"2006-01-02T15:04:05",
	"2006-01-02T15:04",
	"2006-01-02",
}

// eventTime converts properties.time to whole seconds since the epoch. It
// accepts numbers and numeric strings in seconds, milliseconds,
// microseconds or nanoseconds (fractions are dropped), and ISO-8601 /
// RFC 3339 date-times with a timezone ("Z", "+02:00", "+0200", "+02", or
// " UTC"), 'T' or a space between date and time. On failure it returns
// the reason.
func eventTime(v any) (int64, string) {
	switch x := v.(type) {
	case json.Number:
		sec, reason, ok := numericTime(string(x))
		if !ok {
			return 0, fmt.Sprintf("%q is not a valid number", string(x))
		}
		return sec, reason
	case string:
		s := strings.TrimSpace(x)
		if s == "" {
			return 0, "is empty"
		}
		if sec, reason, ok := numericTime(s); ok {
			return sec, reason
		}
		return isoTime(s)
	case float64:
		return floatTime(x)
	case int:
		return intTime(int64(x))
	case int32:
		return intTime(int64(x))
	case int64:
		return intTime(x)
	case uint64:
		if x > math.MaxInt64 {
			return 0, fmt.Sprintf("%d is too large to be a time", x)
		}
		return intTime(int64(x))
	case nil:
		return 0, "is null"
	}
	return 0, "must be a number of seconds or milliseconds since the epoch, or an ISO-8601 date-time; got " + kind(v)
}

// numericTime converts a number's text; ok is false when s is not a number.
func numericTime(s string) (sec int64, reason string, ok bool) {
	intPart, frac, hasPoint := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	digits := strings.TrimPrefix(intPart, "-")
	if digits != "" && allDigits(digits) && (!hasPoint || frac != "" && allDigits(frac)) {
		n, err := strconv.ParseInt(intPart, 10, 64)
		if err != nil {
			return 0, fmt.Sprintf("%s is too large to be a time", s), true
		}
		if neg && hasPoint && strings.Trim(frac, "0") != "" {
			n-- // floor
		}
		sec, reason = intTime(n)
		return sec, reason, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, "", false
	}
	sec, reason = floatTime(f)
	return sec, reason, true
}

func intTime(n int64) (int64, string) {
	switch {
	case n < msFrom:
		return n, ""
	case n < usFrom:
		return n / 1e3, ""
	case n < nsFrom:
		return n / 1e6, ""
	}
	return n / 1e9, ""
}

func floatTime(f float64) (int64, string) {
	switch {
	case math.IsNaN(f):
		return 0, "is not a number"
	case f >= 1e20: // also +Inf
		return 0, fmt.Sprintf("%g is too large to be a time", f)
	case f <= -msFrom: // also -Inf
		return int64(math.Max(math.Floor(f), -1e18)), "" // before 1971 whatever the unit
	case f < msFrom:
		return int64(math.Floor(f)), ""
	case f < usFrom:
		return int64(math.Floor(f / 1e3)), ""
	case f < nsFrom:
		return int64(math.Floor(f / 1e6)), ""
	}
	return int64(math.Floor(f / 1e9)), ""
}

func isoTime(s string) (int64, string) {
	t := s
	if len(t) > 10 && (t[10] == ' ' || t[10] == 't') {
		t = t[:10] + "T" + t[11:]
	}
	if strings.HasSuffix(t, " UTC") {
		t = strings.TrimSuffix(t, " UTC") + "Z"
	} else if strings.HasSuffix(t, "z") {
		t = t[:len(t)-1] + "Z"
	}
	for _, layout := range zoned {
		if tm, err := time.Parse(layout, t); err == nil {
			return tm.Unix(), ""
		}
	}
	for _, layout := range unzoned {
		if _, err := time.Parse(layout, t); err == nil {
			return 0, fmt.Sprintf("%q has no timezone; add Z for UTC or an offset such as +02:00", s)
		}
	}
	return 0, fmt.Sprintf("%q is not a number or an ISO-8601 date-time", s)
}

// checkTime enforces Mixpanel's window: not before 1971, not more than an
// hour after now.
func checkTime(sec int64, now time.Time) string {
	if sec < minTime.Unix() {
		return fmt.Sprintf("%s is before %s", formatUnix(sec), minTime.Format(time.RFC3339))
	}
	if limit := now.Add(time.Hour); time.Unix(sec, 0).After(limit) {
		return fmt.Sprintf("%s is more than 1 hour in the future (now is %s)", formatUnix(sec), now.UTC().Format(time.RFC3339))
	}
	return ""
}

func formatUnix(sec int64) string {
	if sec < -62135596800 { // before year 1
		return strconv.FormatInt(sec, 10) + " seconds"
	}
	return time.Unix(sec, 0).UTC().Format(time.RFC3339)
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// kind names a JSON value's type for people.
func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number, float64, int, int32, int64, uint64:
		return "a number"
	case map[string]any:
		return "an object"
	case []any, []string:
		return "an array"
	}
	return fmt.Sprintf("a value of type %T", v)
}
