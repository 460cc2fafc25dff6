package importer

import (
	"errors"
	"net/http"
	"testing"

	"github.com/cebulk/cebulk/pkg/ce"
)

// backendErr is an upload error that says whether the chunk may be sent
// again.
type backendErr struct{ resend bool }

func (e backendErr) Error() string    { return "backend" }
func (e backendErr) Resendable() bool { return e.resend }

func TestClassifyUpload(t *testing.T) {
	for _, tc := range []struct {
		name               string
		err                error
		stopped, delivered bool
		want               uploadOutcome
	}{
		{"sent", nil, false, true, uploadSent},
		{"stopped before the end", errors.New("stopped"), true, false, uploadStopped},
		{"throttled", &ce.APIError{StatusCode: http.StatusTooManyRequests}, false, true, uploadThrottled},
		{"refused", &ce.APIError{StatusCode: http.StatusBadRequest}, false, true, uploadRefused},
		{"body cut", errors.New("reset"), false, false, uploadNotSent},
		{"answer lost", errors.New("reset"), false, true, uploadAmbiguous},
		{"resendable after the whole body", backendErr{true}, false, true, uploadNotSent},
		{"resendable and stopped", backendErr{true}, true, false, uploadStopped},
		{"not resendable though stopped", backendErr{false}, true, false, uploadAmbiguous},
		{"not resendable", backendErr{false}, false, false, uploadAmbiguous},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cr := &chunkReader{stopped: tc.stopped, delivered: tc.delivered}
			if got := classifyUpload(tc.err, cr); got != tc.want {
				t.Errorf("classifyUpload = %d, want %d", got, tc.want)
			}
		})
	}
}
