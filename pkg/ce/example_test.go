package ce_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cebulk/cebulk/pkg/ce"
)

// exampleCreds are placeholder credentials for the examples.
var exampleCreds = ce.Credentials{
	UserSecret:         "user-secret",
	OrganizationSecret: "org-secret",
	ElementToken:       "element-token",
}

// newExampleServer stands in for CE: a download job that runs for two
// polls and yields two Mixpanel events as JSON lines, and an upload
// endpoint that reports what it received.
func newExampleServer() *httptest.Server {
	var polls atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("POST /elements/api-v2/hubs/general/bulk/query", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"id":"42114492","status":"CREATED"}`)
	})
	mux.HandleFunc("GET /elements/api-v2/hubs/general/bulk/42114492/status", func(w http.ResponseWriter, r *http.Request) {
		if polls.Add(1) < 3 {
			fmt.Fprint(w, `{"id":"42114492","status":"RUNNING"}`)
			return
		}
		fmt.Fprint(w, `{"id":"42114492","status":"COMPLETED","recordsCount":2,"recordsFailedCount":0}`)
	})
	mux.HandleFunc("GET /elements/api-v2/hubs/general/bulk/42114492/activities", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, `{"event":"Signed Up","properties":{"distinct_id":"12157","time":1764115200}}`)
		fmt.Fprintln(w, `{"event":"Purchase","properties":{"distinct_id":"12157","time":1764118800}}`)
	})
	mux.HandleFunc("POST /elements/api-v2/hubs/general/bulk/users", func(w http.ResponseWriter, r *http.Request) {
		_, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		mr := multipart.NewReader(r.Body, params["boundary"])
		for {
			p, err := mr.NextPart()
			if err != nil {
				break
			}
			b, _ := io.ReadAll(p)
			fmt.Printf("CE received part %q: %s\n", p.FormName(), strings.TrimSpace(string(b)))
		}
		fmt.Fprint(w, `{"id":"1234","status":"CREATED"}`)
	})
	return httptest.NewServer(mux)
}

func ExampleNewClient() {
	c, err := ce.NewClient("https://api.cloud-elements.com/elements/api-v2", exampleCreds,
		ce.WithRetry(4, 500*time.Millisecond, 30*time.Second),
		ce.WithPollInterval(30*time.Second),
	)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.BaseURL())

	// Credentials never print.
	fmt.Println(exampleCreds)

	// Invalid configuration is reported at once, naming what is missing.
	_, err = ce.NewClient("https://api.cloud-elements.com/elements/api-v2", ce.Credentials{UserSecret: "u"})
	fmt.Println(err)
	// Output:
	// https://api.cloud-elements.com/elements/api-v2/
	// ce.Credentials{REDACTED}
	// ce: missing credentials: OrganizationSecret, ElementToken
}

// This example starts a bulk download of one day of Mixpanel events, waits
// for it, and streams the records.
func ExampleClient_StartQuery() {
	srv := newExampleServer()
	defer srv.Close()
	ctx := context.Background()

	c, err := ce.NewClient(srv.URL+"/elements/api-v2", exampleCreds, ce.WithPollInterval(time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	day := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	job, err := c.StartQuery(ctx, ce.QueryRequest{Object: "activities", From: day, To: day.AddDate(0, 0, 1)})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("started job", job.ID, job.Status)

	job, err = c.Wait(ctx, job.ID)
	var jobErr *ce.JobError
	if errors.As(err, &jobErr) {
		log.Fatalf("job failed: %v", jobErr)
	} else if err != nil {
		log.Fatal(err)
	}
	fmt.Println("job", job.ID, job.Status, "records:", job.RecordsCount, "failed:", job.RecordsFailedCount)

	body, err := c.Download(ctx, job.ID, "activities")
	if err != nil {
		log.Fatal(err)
	}
	defer body.Close()
	rr := ce.NewRecordReader(body)
	for {
		rec, err := rr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err) // a *ce.DecodeError: truncated or malformed download
		}
		var event struct {
			Event string `json:"event"`
		}
		if err := json.Unmarshal(rec, &event); err != nil {
			log.Fatal(err)
		}
		fmt.Println("event:", event.Event)
	}
	fmt.Println("records read:", rr.Count())
	// Output:
	// started job 42114492 CREATED
	// job 42114492 COMPLETED records: 2 failed: 0
	// event: Signed Up
	// event: Purchase
	// records read: 2
}

// This example streams people profiles (JSON lines) to a bulk upload job.
func ExampleClient_Upload() {
	srv := newExampleServer()
	defer srv.Close()

	c, err := ce.NewClient(srv.URL+"/elements/api-v2", exampleCreds)
	if err != nil {
		log.Fatal(err)
	}
	// Any io.Reader works, for example an S3 object body; it is streamed,
	// never buffered whole.
	profiles := strings.NewReader(`{"$distinct_id":"12157","$set":{"$city":"Dallas"}}` + "\n")
	job, err := c.Upload(context.Background(), "users", profiles, ce.UploadOptions{
		CallbackPayload: map[string]string{"import": "users-2026-11-25"},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("upload job", job.ID, job.Status)
	// Output:
	// CE received part "metaData": {"format":"json","callback-payload":{"import":"users-2026-11-25"}}
	// CE received part "file": {"$distinct_id":"12157","$set":{"$city":"Dallas"}}
	// upload job 1234 CREATED
}

func ExampleValidateSignature() {
	key := []byte("MySecretEventSignatureKey")
	body := []byte("<INSERT_EVENT_NOTIFICATION_RESPONSE_BODY>")

	// What CE sends in the Elements-Webhook-Signature header:
	sig := ce.Sign(body, key)
	fmt.Println(sig)

	fmt.Println(ce.ValidateSignature(sig, body, key))

	err := ce.ValidateSignature(sig, []byte("tampered"), key)
	fmt.Println(errors.Is(err, ce.ErrSignatureInvalid), errors.Is(err, ce.ErrSignatureMismatch))

	err = ce.ValidateSignature("", body, key)
	fmt.Println(errors.Is(err, ce.ErrSignatureInvalid), errors.Is(err, ce.ErrSignatureMissing))
	// Output:
	// sha256=jHdbRx5EZAsOfTwAPJOGkNUzQMVVdu5VJlxcsk+G6jQ=
	// <nil>
	// true true
	// true true
}

func ExampleNewCSVRecordReader() {
	csv := "$distinct_id,$city\n12157,Dallas\n12158,\"San Antonio, TX\"\n"
	rr := ce.NewCSVRecordReader(strings.NewReader(csv))
	for {
		rec, err := rr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(rec))
	}
	// Output:
	// {"$distinct_id":"12157","$city":"Dallas"}
	// {"$distinct_id":"12158","$city":"San Antonio, TX"}
}

func ExampleAPIError() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"requestId":"53dbca9430045c016b46566c","message":"No job found with id 123"}`)
	}))
	defer srv.Close()
	c, err := ce.NewClient(srv.URL+"/elements/api-v2", exampleCreds)
	if err != nil {
		log.Fatal(err)
	}
	_, err = c.Status(context.Background(), "123")
	fmt.Println(err)
	fmt.Println(errors.Is(err, ce.ErrNotFound))
	var apiErr *ce.APIError
	if errors.As(err, &apiErr) {
		fmt.Println(apiErr.StatusCode, apiErr.RequestID)
	}
	// Output:
	// ce: GET hubs/general/bulk/123/status: 404 Not Found: No job found with id 123
	// true
	// 404 53dbca9430045c016b46566c
}
