package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var bannerField = regexp.MustCompile(`(?m)^  (username|secret|project id|project token):\s+(\S+)$`)

func TestEmulatorCommandMixpanel(t *testing.T) {
	b, stop := startEmulator(t, "-api", "mixpanel", "-addr", "127.0.0.1:0", "-events", "240", "-users", "20",
		"-days", "2", "-seed", "1", "-mp-page-size", "8")
	fields := map[string]string{}
	for _, m := range bannerField.FindAllStringSubmatch(b.text, -1) {
		fields[m[1]] = m[2]
	}
	u, err := url.Parse(b.base)
	if err != nil || u.Hostname() != "127.0.0.1" || u.Path != "" {
		t.Fatalf("base URL %q, want http://127.0.0.1:<port>", b.base)
	}
	user, secret, project, token := fields["username"], fields["secret"], fields["project id"], fields["project token"]
	if user == "" || secret == "" || project == "" || token == "" {
		t.Fatalf("banner lacks credentials:\n%s", b.text)
	}
	for _, want := range []string{"curl -sS --compressed -u '" + user + ":" + secret + "' '" + b.base + "/api/2.0/export?",
		b.base + "/api/query/engage?project_id=" + project, b.base + "/import?strict=1&project_id=" + project, b.base + "/engage?verbose=1"} {
		if !strings.Contains(b.text, want) {
			t.Errorf("banner lacks %q:\n%s", want, b.text)
		}
	}
	if got := b.to.Sub(b.from); got != 48*time.Hour || !b.to.Equal(b.to.Truncate(24*time.Hour)) {
		t.Errorf("activities window [%v, %v), want two whole UTC days", b.from, b.to)
	}

	call := func(method, path, contentType, body string, auth bool) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, b.base+path, strings.NewReader(body))
		if auth {
			req.SetBasicAuth(user, secret)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, out
	}
	day := b.from.Format("2006-01-02")
	exportPath := "/api/2.0/export?" + url.Values{"project_id": {project}, "from_date": {day}, "to_date": {day}}.Encode()
	code, body := call("GET", exportPath, "", "", true)
	if n := strings.Count(string(body), "\n"); code != 200 || n != 120 {
		t.Fatalf("export of one day = %d with %d lines, want 120", code, n)
	}
	if code, _ := call("GET", exportPath, "", "", false); code != http.StatusUnauthorized {
		t.Errorf("export without credentials = %d, want 401", code)
	}

	code, body = call("POST", "/api/query/engage?project_id="+project, "application/x-www-form-urlencoded", "", true)
	var page struct {
		PageSize int               `json:"page_size"`
		Total    int               `json:"total"`
		Results  []json.RawMessage `json:"results"`
	}
	if err := json.Unmarshal(body, &page); code != 200 || err != nil || page.Total != 20 || page.PageSize != 8 || len(page.Results) != 8 {
		t.Errorf("engage query = %d %s, want 8 of 20 profiles", code, body)
	}

	ev := `[{"event":"Signed Up","properties":{"time":` + strconv.FormatInt(b.from.Unix()+60, 10) + `,"distinct_id":"user-1","$insert_id":"cmd-1"}}]`
	code, body = call("POST", "/import?strict=1&project_id="+project, "application/json", ev, true)
	if code != 200 || !strings.Contains(string(body), `"num_records_imported":1`) {
		t.Errorf("import = %d %s", code, body)
	}
	code, body = call("POST", "/engage?verbose=1", "application/json", `[{"$token":"`+token+`","$distinct_id":"user-1","$set":{"plan":"pro"}}]`, false)
	if code != 200 || string(body) != `{"status":1,"error":null}` {
		t.Errorf("engage update = %d %s", code, body)
	}
	if code, body = call("GET", exportPath, "", "", true); strings.Count(string(body), "\n") != 121 || !strings.Contains(string(body), `"cmd-1"`) {
		t.Errorf("export after the import = %d with %d lines, want 121 with the imported event", code, strings.Count(string(body), "\n"))
	}

	stop()
	if _, err := http.Get(b.base + "/import"); err == nil {
		t.Errorf("the emulator still answers after it stopped")
	}
}

func TestEmulatorCommandRejectsUnknownAPI(t *testing.T) {
	err := run(t.Context(), []string{"emulator", "-api", "segment"}, io.Discard, io.Discard)
	var ue *usageError
	if err == nil || !errors.As(err, &ue) {
		t.Errorf("run = %v, want a usage error", err)
	}
}
