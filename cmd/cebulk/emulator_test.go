package main

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// banner is what the emulator command prints on start.
type banner struct {
	base, user, org, element, key string
	from, to                      time.Time
	text                          string
	rest                          <-chan string // what the command printed after its banner, once it ended
}

var windowRE = regexp.MustCompile(`events in \[(\S+), (\S+)\)`)

// startEmulator runs "cebulk emulator args..." until stop is called (or
// the test ends) and returns its banner. stop fails the test unless the
// command ends cleanly within 10s.
func startEmulator(t *testing.T, args ...string) (banner, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, append([]string{"emulator"}, args...), pw, io.Discard)
		pw.CloseWithError(err)
		done <- err
	}()
	b := readBanner(t, pr)
	stop := func() {
		t.Helper()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("emulator command returned %v after cancel, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("emulator command did not stop after cancel")
		}
	}
	return b, stop
}

// readBanner reads the start banner from the command's stdout, then keeps
// draining it so the command never blocks on its output.
func readBanner(t *testing.T, r io.Reader) banner {
	t.Helper()
	sc := bufio.NewScanner(r)
	var b banner
	var text strings.Builder
	for sc.Scan() {
		line := sc.Text()
		text.WriteString(line + "\n")
		field := func(name string) string { return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), name)) }
		switch l := strings.TrimSpace(line); {
		case strings.HasPrefix(l, "base URL:"):
			b.base = field("base URL:")
		case strings.HasPrefix(l, "user secret:"):
			b.user = field("user secret:")
		case strings.HasPrefix(l, "org secret:"):
			b.org = field("org secret:")
		case strings.HasPrefix(l, "element token:"):
			b.element = field("element token:")
		case strings.HasPrefix(l, "signature key:"):
			b.key = field("signature key:")
		case strings.HasPrefix(l, "activities:"):
			if m := windowRE.FindStringSubmatch(l); m != nil {
				b.from, _ = time.Parse(time.RFC3339, m[1])
				b.to, _ = time.Parse(time.RFC3339, m[2])
			}
		}
		if strings.HasPrefix(line, "Stop with") {
			b.text = text.String()
			rest := make(chan string, 1)
			go func() {
				var after strings.Builder
				for sc.Scan() {
					after.WriteString(sc.Text() + "\n")
				}
				_, _ = io.Copy(io.Discard, r)
				rest <- after.String()
			}()
			b.rest = rest
			return b
		}
	}
	t.Fatalf("the command ended before printing its banner: %q (%v)", text.String(), sc.Err())
	return b
}

func TestEmulatorCommand(t *testing.T) {
	callbacks := make(chan *http.Request, 10)
	bodies := make(chan []byte, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		callbacks <- r
		bodies <- b
	}))
	defer hook.Close()

	b, stop := startEmulator(t, "-addr", "127.0.0.1:0", "-events", "240", "-users", "20", "-days", "2",
		"-signature-key", "K", "-download-format", "jsonl", "-completion-delay", "0", "-seed", "1", "-tick", "10ms")

	u, err := url.Parse(b.base)
	if err != nil || u.Hostname() != "127.0.0.1" || !strings.HasSuffix(b.base, "/elements/api-v2") {
		t.Fatalf("base URL %q, want http://127.0.0.1:<port>/elements/api-v2", b.base)
	}
	if b.user == "" || b.org == "" || b.element == "" || b.key != "K" {
		t.Errorf("banner credentials = %+v", b)
	}
	if !strings.Contains(b.text, "curl -sS -X POST -H 'Authorization: User "+b.user) || !strings.Contains(b.text, b.base+"/hubs/general/bulk/query?q=") {
		t.Errorf("banner lacks a sample curl line:\n%s", b.text)
	}
	if got := b.to.Sub(b.from); got != 48*time.Hour || !b.to.Equal(b.to.Truncate(24*time.Hour)) {
		t.Errorf("activities window [%v, %v), want two whole UTC days", b.from, b.to)
	}

	auth := "User " + b.user + ", Organization " + b.org + ", Element " + b.element
	call := func(method, path string, headers ...string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, b.base+path, nil)
		req.Header.Set("Authorization", auth)
		for _, h := range headers {
			k, v, _ := strings.Cut(h, ": ")
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}

	q := url.Values{"q": {"select * from activities"}, "from": {b.from.Format(time.RFC3339)}, "to": {b.from.AddDate(0, 0, 1).Format(time.RFC3339)}}
	code, body := call("POST", "/hubs/general/bulk/query?"+q.Encode(), "Elements-Async-Callback-Url: "+hook.URL+"/cb?job=x")
	var created struct{ ID, Status string }
	if err := json.Unmarshal(body, &created); code != 200 || err != nil || created.Status != "CREATED" {
		t.Fatalf("POST bulk/query = %d %s", code, body)
	}
	code, body = call("GET", "/hubs/general/bulk/"+created.ID+"/status")
	var st struct {
		Status       string
		RecordsCount int
	}
	if err := json.Unmarshal(body, &st); code != 200 || err != nil || st.Status != "COMPLETED" || st.RecordsCount != 120 {
		t.Fatalf("status = %d %s, want COMPLETED with 120 records (one day of two)", code, body)
	}
	code, body = call("GET", "/hubs/general/bulk/"+created.ID+"/activities", "Accept: application/json")
	if n := strings.Count(string(body), "\n"); code != 200 || n != 120 || body[0] != '{' {
		t.Errorf("download = %d, %d lines starting %q; want 120 JSON lines", code, n, body[:1])
	}
	if code, _ := call("GET", "/hubs/general/bulk/jobs", "Authorization: User x, Organization y, Element z"); code != http.StatusUnauthorized {
		t.Errorf("call with wrong credentials = %d, want 401", code)
	}

	select {
	case r := <-callbacks:
		b2 := <-bodies
		mac := hmac.New(sha256.New, []byte("K"))
		mac.Write(b2)
		want := "sha256=" + base64.StdEncoding.EncodeToString(mac.Sum(nil))
		if got := r.Header.Get("Elements-Webhook-Signature"); !hmac.Equal([]byte(got), []byte(want)) || r.URL.RawQuery != "job=x" {
			t.Errorf("callback signature %q, query %q; want %q and job=x", got, r.URL.RawQuery, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no callback within 10s")
	}

	stop()
	if _, err := http.Get(b.base + "/bulk/jobs"); err == nil {
		t.Errorf("the emulator still answers after it stopped")
	}
}
