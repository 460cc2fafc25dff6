package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cebulk/cebulk/internal/mptest"
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

// The emulator serves HTTPS with -tls-cert/-tls-key, and with
// -mp-discard-imports counts /import events without keeping them: the
// export does not serve them and the count is printed on stop.
func TestEmulatorCommandMixpanelTLSDiscard(t *testing.T) {
	certFile, keyFile, pool := writeTestCert(t)
	b, stop := startEmulator(t, "-api", "mixpanel", "-addr", "127.0.0.1:0", "-events", "20", "-users", "2", "-days", "1",
		"-mp-discard-imports", "-tls-cert", certFile, "-tls-key", keyFile)
	if !strings.HasPrefix(b.base, "https://127.0.0.1:") {
		t.Fatalf("base URL %q, want https://127.0.0.1:<port>", b.base)
	}
	if !strings.Contains(b.text, "not kept (-mp-discard-imports)") {
		t.Errorf("banner does not say imports are discarded:\n%s", b.text)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	call := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, b.base+path, strings.NewReader(body))
		req.SetBasicAuth(mptest.DefaultUsername, mptest.DefaultSecret)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	at := strconv.FormatInt(b.from.Unix()+60, 10)
	evs := `[{"event":"A","properties":{"time":` + at + `,"distinct_id":"u1","$insert_id":"tls-1"}},` +
		`{"event":"A","properties":{"time":` + at + `,"distinct_id":"u1","$insert_id":"tls-2"}},` +
		`{"event":"A","properties":{"time":` + at + `,"distinct_id":"u1"}}]`
	code, body := call("POST", "/import?project_id="+mptest.DefaultProjectID, evs)
	if code != 200 || !strings.Contains(body, `"num_records_imported":2`) {
		t.Errorf("import over TLS = %d %s, want 2 of 3 imported", code, body)
	}
	day := b.from.Format("2006-01-02")
	code, body = call("GET", "/api/2.0/export?"+url.Values{"project_id": {mptest.DefaultProjectID}, "from_date": {day}, "to_date": {day}}.Encode(), "")
	if code != 200 || strings.Contains(body, "tls-1") || strings.Count(body, "\n") != 20 {
		t.Errorf("export = %d with %d lines, want the 20 sample events and no discarded import", code, strings.Count(body, "\n"))
	}
	stop()
	if rest, want := <-b.rest, "/import accepted 2 events (0 replaced an identical stored event, 2 discarded unstored)"; !strings.Contains(rest, want) {
		t.Errorf("output on stop = %q, want it to contain %q", rest, want)
	}
}

func TestEmulatorCommandTLSFlagsGoTogether(t *testing.T) {
	certFile, _, _ := writeTestCert(t)
	err := run(t.Context(), []string{"emulator", "-api", "mixpanel", "-addr", "127.0.0.1:0", "-tls-cert", certFile}, io.Discard, io.Discard)
	var ue *usageError
	if !errors.As(err, &ue) {
		t.Errorf("run with -tls-cert alone = %v, want a usage error", err)
	}
}

// writeTestCert writes a self-signed certificate for 127.0.0.1 and its key
// as PEM files and returns them with a pool that trusts the certificate.
func writeTestCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return certFile, keyFile, pool
}
