package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/cebulk/cebulk/internal/cetest"
)

// runEmulator serves a cetest.Fake (-api ce, the default) or an
// mptest.Fake (-api mixpanel), seeded with sample Mixpanel data, on a
// loopback address until ctx ends. CE jobs complete and callbacks go out
// on their own, as with the real CE.
func runEmulator(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("emulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		addr     = fs.String("addr", "127.0.0.1:8380", "listen `address`; the host must be a loopback address (port 0 picks a free port)")
		events   = fs.Int("events", 5000, "number of sample activities (Mixpanel events)")
		users    = fs.Int("users", 500, "number of sample users (Mixpanel people profiles)")
		days     = fs.Int("days", 3, "the activities are spread over this many whole UTC days, ending at today's midnight")
		seed     = fs.Int64("seed", 1, "seed of the sample data (the same seed gives the same records)")
		sigKey   = fs.String("signature-key", "", "sign job callbacks with this `key` (Elements-Webhook-Signature); empty: unsigned")
		format   = fs.String("download-format", "array", "framing of application/json downloads: array or jsonl")
		delay    = fs.Duration("completion-delay", 2*time.Second, "how long a job runs before it completes")
		userSec  = fs.String("user-secret", cetest.DefaultUserSecret, "the User secret to accept")
		orgSec   = fs.String("org-secret", cetest.DefaultOrgSecret, "the Organization secret to accept")
		elemTok  = fs.String("element-token", cetest.DefaultElementToken, "the Element token to accept")
		verbose  = fs.Bool("v", false, "log every request to stderr")
		interval = fs.Duration("tick", 250*time.Millisecond, "how often jobs are advanced and callbacks delivered")
		api      = fs.String("api", "ce", "the API to emulate: ce (the Cloud Elements bulk API) or mixpanel (Mixpanel's export, engage query, /import and /engage)")
		tlsCert  = fs.String("tls-cert", "", "serve HTTPS with this PEM certificate `file` (with -tls-key); empty: plain HTTP")
		tlsKey   = fs.String("tls-key", "", "the PEM private key `file` of -tls-cert")
		mp       = addMixpanelFlags(fs)
	)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: cebulk emulator [flags]")
		fmt.Fprintln(fs.Output(), "\nServes the in-memory Cloud Elements bulk API emulator (mixpanel element), or with -api mixpanel")
		fmt.Fprintln(fs.Output(), "the Mixpanel API emulator, on 127.0.0.1.")
		fmt.Fprintln(fs.Output(), "\nflags:")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *api != "ce" && *api != "mixpanel":
		return &usageError{fmt.Errorf("emulator: -api must be ce or mixpanel, not %q", *api)}
	case *format != "array" && *format != "jsonl":
		return &usageError{fmt.Errorf("emulator: -download-format must be array or jsonl, not %q", *format)}
	case *events < 0 || *users < 0:
		return &usageError{errors.New("emulator: -events and -users must not be negative")}
	case *days < 1:
		return &usageError{errors.New("emulator: -days must be at least 1")}
	case *delay < 0 || *interval <= 0:
		return &usageError{errors.New("emulator: -completion-delay must not be negative and -tick must be positive")}
	case (*tlsCert == "") != (*tlsKey == ""):
		return &usageError{errors.New("emulator: -tls-cert and -tls-key go together")}
	}
	var tlsConf *tls.Config
	if *tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			return fmt.Errorf("emulator: -tls-cert/-tls-key: %v", err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if *api == "mixpanel" {
		addrSet := false
		fs.Visit(func(f *flag.Flag) { addrSet = addrSet || f.Name == "addr" })
		if !addrSet {
			*addr = defaultMixpanelAddr
		}
	}
	if err := checkLoopback(*addr); err != nil {
		return &usageError{err}
	}
	if *api == "mixpanel" {
		return runMixpanelEmulator(ctx, mp, sampleSpec{addr: *addr, tls: tlsConf, events: *events, users: *users, days: *days, seed: *seed, verbose: *verbose}, stdout, stderr)
	}

	opts := cetest.Options{
		Credentials:     cetest.Credentials{UserSecret: *userSec, OrganizationSecret: *orgSec, ElementToken: *elemTok},
		CompletionDelay: *delay,
		DownloadFormat:  *format,
		SignatureKey:    *sigKey,
		TickInterval:    *interval,
	}
	if *verbose {
		opts.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	to := time.Now().UTC().Truncate(24 * time.Hour)
	from := to.AddDate(0, 0, -*days)
	fake := cetest.NewFake(opts)
	fake.SeedGenerated("activities", cetest.SampleActivities(*seed, *events, from, to))
	fake.SeedGenerated("users", cetest.SampleUsers(*seed, *users))

	fake.Start()
	defer fake.Close()
	return serveLoopback(ctx, *addr, tlsConf, fake, stdout, func(base string) {
		base += "/elements/api-v2"
		printBanner(stdout, base, fake.Credentials(), *sigKey, *events, *users, from, to, *delay, *format)
	})
}

// serveLoopback serves h on addr until ctx ends, over TLS when tlsConf is
// not nil (HTTP/1.1 and HTTP/2, as Go's server offers them), calling banner
// with the base URL (scheme://host:port) once listening.
func serveLoopback(ctx context.Context, addr string, tlsConf *tls.Config, h http.Handler, stdout io.Writer, banner func(base string)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("emulator: %v", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, TLSConfig: tlsConf}
	served := make(chan error, 1)
	scheme := "http"
	if tlsConf != nil {
		scheme = "https"
		go func() { served <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { served <- srv.Serve(ln) }()
	}
	banner(scheme + "://" + ln.Addr().String())

	select {
	case err := <-served:
		return fmt.Errorf("emulator: serve: %v", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		srv.Close()
	}
	<-served
	fmt.Fprintln(stdout, "cebulk emulator: stopped")
	return nil
}

// checkLoopback refuses any listen address whose host is not a loopback
// address: the emulator accepts well-known secrets and must never be
// reachable from another machine.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("emulator: -addr %q: %v", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("emulator: -addr %q: refusing a non-loopback host; use 127.0.0.1", addr)
	}
	return nil
}

func printBanner(w io.Writer, base string, creds cetest.Credentials, sigKey string, events, users int,
	from, to time.Time, delay time.Duration, format string) {
	sig := sigKey
	if sig == "" {
		sig = "(none: callbacks are not signed)"
	}
	auth := creds.Header()
	fmt.Fprintln(w, "cebulk emulator: Cloud Elements bulk API (mixpanel element) listening")
	fmt.Fprintf(w, "  base URL:       %s\n", base)
	fmt.Fprintf(w, "  user secret:    %s\n", creds.UserSecret)
	fmt.Fprintf(w, "  org secret:     %s\n", creds.OrganizationSecret)
	fmt.Fprintf(w, "  element token:  %s\n", creds.ElementToken)
	fmt.Fprintf(w, "  signature key:  %s\n", sig)
	fmt.Fprintf(w, "  activities:     %d events in [%s, %s)\n", events, from.Format(time.RFC3339), to.Format(time.RFC3339))
	fmt.Fprintf(w, "  users:          %d profiles\n", users)
	fmt.Fprintf(w, "  jobs:           complete %s after creation; application/json downloads are %s\n", delay, format)
	fmt.Fprintln(w, "try:")
	fmt.Fprintf(w, "  curl -sS -X POST -H 'Authorization: %s' '%s/hubs/general/bulk/query?q=select%%20*%%20from%%20activities&from=%s&to=%s'\n",
		auth, base, from.Format(time.RFC3339), from.AddDate(0, 0, 1).Format(time.RFC3339))
	fmt.Fprintf(w, "  curl -sS -H 'Authorization: %s' '%s/hubs/general/bulk/<id>/status'\n", auth, base)
	fmt.Fprintf(w, "  curl -sS -H 'Authorization: %s' '%s/hubs/general/bulk/<id>/activities'\n", auth, base)
	fmt.Fprintln(w, "Stop with Ctrl-C.")
}
