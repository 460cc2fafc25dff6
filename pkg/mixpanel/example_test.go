package mixpanel_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/cebulk/cebulk/pkg/mixpanel"
)

// exampleCreds are placeholder credentials for the examples.
var exampleCreds = mixpanel.Credentials{
	ServiceAccountUser:   "export.1a2b3c.mp-service-account",
	ServiceAccountSecret: "service-account-secret",
	ProjectID:            "2195193",
	ProjectToken:         "project-token",
}

// newExampleServer stands in for Mixpanel: an export of two events, two
// pages of profiles, an /import that refuses the event without a time and
// an /engage that accepts everything.
func newExampleServer() *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/2.0/export", func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("export from %s to %s\n", r.URL.Query().Get("from_date"), r.URL.Query().Get("to_date"))
		fmt.Fprintln(w, `{"event":"Signed up","properties":{"time":1764115200,"distinct_id":"12157","$insert_id":"a1"}}`)
		fmt.Fprintln(w, `{"event":"Purchase","properties":{"time":1764118800,"distinct_id":"12157","$insert_id":"a2"}}`)
	})
	mux.HandleFunc("POST /api/query/engage", func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("page") == "" {
			fmt.Fprint(w, `{"page":0,"page_size":2,"session_id":"1234567890-EXAMPL","status":"ok","total":3,"results":[{"$distinct_id":"u1","$properties":{}},{"$distinct_id":"u2","$properties":{}}]}`)
			return
		}
		fmt.Fprint(w, `{"page":1,"page_size":2,"session_id":"1234567890-EXAMPL","status":"ok","total":3,"results":[{"$distinct_id":"u3","$properties":{}}]}`)
	})
	mux.HandleFunc("POST /import", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"code":400,"error":"some data points in the request failed validation","failed_records":[{"index":1,"$insert_id":"b2","field":"properties.time","message":"'properties.time' is invalid"}],"num_records_imported":2,"status":"Bad Request"}`)
	})
	mux.HandleFunc("POST /engage", func(w http.ResponseWriter, r *http.Request) {
		var updates []map[string]any
		json.NewDecoder(r.Body).Decode(&updates)
		fmt.Printf("engage received %d updates, $token set: %v\n", len(updates), updates[0]["$token"] != nil)
		fmt.Fprint(w, `{"error":null,"status":1}`)
	})
	return httptest.NewServer(mux)
}

func ExampleNewClient() {
	c, err := mixpanel.NewClient(exampleCreds, mixpanel.WithRegion(mixpanel.RegionEU), mixpanel.WithConcurrency(16))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.Hosts().Export)
	fmt.Println(c.Hosts().Ingestion)

	// Credentials never print.
	fmt.Println(exampleCreds)

	// Emulators and proxies serve every API under one base URL.
	c, _ = mixpanel.NewClient(exampleCreds, mixpanel.WithBaseURL("http://127.0.0.1:8766/mixpanel"))
	fmt.Println(c.Hosts().Query)

	// Invalid configuration is reported at once.
	_, err = mixpanel.NewClient(mixpanel.Credentials{ServiceAccountUser: "u"})
	fmt.Println(err)
	// Output:
	// https://data-eu.mixpanel.com/
	// https://api-eu.mixpanel.com/
	// mixpanel.Credentials{REDACTED}
	// http://127.0.0.1:8766/mixpanel/
	// mixpanel: missing credentials: ServiceAccountSecret, ProjectID
}

func ExampleClient_Export() {
	srv := newExampleServer()
	defer srv.Close()
	c, err := mixpanel.NewClient(exampleCreds, mixpanel.WithBaseURL(srv.URL))
	if err != nil {
		log.Fatal(err)
	}
	// One day: From and To are both inclusive.
	day := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	body, err := c.Export(context.Background(), mixpanel.ExportRequest{From: day, To: day})
	if err != nil {
		log.Fatal(err)
	}
	defer body.Close()
	rr := mixpanel.NewRecordReader(body, 0)
	for {
		ev, err := rr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(ev))
	}
	// Output:
	// export from 2026-11-25 to 2026-11-25
	// {"event":"Signed up","properties":{"time":1764115200,"distinct_id":"12157","$insert_id":"a1"}}
	// {"event":"Purchase","properties":{"time":1764118800,"distinct_id":"12157","$insert_id":"a2"}}
}

func ExampleClient_Profiles() {
	srv := newExampleServer()
	defer srv.Close()
	c, err := mixpanel.NewClient(exampleCreds, mixpanel.WithBaseURL(srv.URL))
	if err != nil {
		log.Fatal(err)
	}
	for profile, err := range c.Profiles(context.Background(), mixpanel.ProfileQuery{}) {
		if errors.Is(err, mixpanel.ErrSessionExpired) {
			log.Fatal("the paging session expired: start the snapshot again")
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(profile))
	}
	// Output:
	// {"$distinct_id":"u1","$properties":{}}
	// {"$distinct_id":"u2","$properties":{}}
	// {"$distinct_id":"u3","$properties":{}}
}

func ExampleClient_Import() {
	srv := newExampleServer()
	defer srv.Close()
	c, err := mixpanel.NewClient(exampleCreds, mixpanel.WithBaseURL(srv.URL))
	if err != nil {
		log.Fatal(err)
	}
	// Each record carries the caller's position: here, its line number.
	lines := []string{
		`{"event":"Signed up","properties":{"time":1764115200,"distinct_id":"12157","$insert_id":"b1"}}`,
		`{"event":"Purchase","properties":{"distinct_id":"12157","$insert_id":"b2"}}`,
		`{"event":"Purchase","properties":{"time":1764118800,"distinct_id":"12158","$insert_id":"b3"}}`,
	}
	var records iter.Seq2[mixpanel.Record, error] = func(yield func(mixpanel.Record, error) bool) {
		for i, l := range lines {
			if !yield(mixpanel.Record{Pos: int64(i + 1), Data: json.RawMessage(l)}, nil) {
				return
			}
		}
	}
	sum, err := c.Import(context.Background(), records, mixpanel.IngestOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("imported %d of %d\n", sum.Imported, sum.Records)
	for _, f := range sum.Failures {
		fmt.Printf("line %d (%s): %s: %s\n", f.Pos, f.InsertID, f.Field, f.Message)
	}
	// Output:
	// imported 2 of 3
	// line 2 (b2): properties.time: 'properties.time' is invalid
}

func ExampleClient_UpdateProfileBatch() {
	srv := newExampleServer()
	defer srv.Close()
	c, err := mixpanel.NewClient(exampleCreds, mixpanel.WithBaseURL(srv.URL))
	if err != nil {
		log.Fatal(err)
	}
	res, err := c.UpdateProfileBatch(context.Background(), []mixpanel.Record{
		{Pos: 1, Data: json.RawMessage(`{"$distinct_id":"13793","$set":{"plan":"pro"}}`)},
		{Pos: 2, Data: json.RawMessage(`{"$distinct_id":"13794","$add":{"Coins":13}}`)},
	})
	var unknown *mixpanel.UnknownOutcomeError
	if errors.As(err, &unknown) {
		log.Fatal("the batch may have been applied: report it, do not resend it")
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("accepted %d of %d\n", res.Imported, res.Records)
	// Output:
	// engage received 2 updates, $token set: true
	// accepted 2 of 2
}
