package importer

import (
	"time"

	"github.com/cebulk/cebulk/internal/mixpanel"
)

// validator applies Mixpanel's rules (package mixpanel) to the records of
// one import.
type validator struct {
	object mixpanel.Object
	now    time.Time
}

func newValidator(object string, now time.Time) validator {
	return validator{object: mixpanel.Object(object), now: now}
}

// normalize returns the record as one JSON line (without its line break),
// or why it is rejected.
func (v validator) normalize(rec map[string]any) ([]byte, string) {
	line, err := mixpanel.Normalize(v.object, rec, v.now)
	if err != nil {
		// A *mixpanel.RejectError reads "field: reason".
		return nil, err.Error()
	}
	return line, ""
}

// csvShape maps a typed CSV row to the object's record shape.
func csvShape(object string) func(map[string]any) map[string]any {
	return mixpanel.Object(object).CSVShape
}
