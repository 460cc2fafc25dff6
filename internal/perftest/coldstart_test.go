package perftest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cebulk/cebulk/internal/awstest"
)

// functions are the bootstraps measured, with the environment each needs
// to initialise (nothing in it is contacted before the first request).
var functions = []struct {
	name, pkg string
}{
	{"hello", "./internal/perftest/hello"},
	// What the AWS SDK costs by itself, built as the functions use it
	// (floor-sdk: awsenv.FromEnv and AsyncInvoker), and as they used it
	// before (floor-defaultchain: the config package and the Lambda client).
	{"floor-sdk", "./internal/perftest/floor/sdk"},
	{"floor-defaultchain", "./internal/perftest/floor/defaultchain"},
	{"export", "./functions/export"},
	{"import", "./functions/import"},
	{"webhook", "./functions/webhook"},
}

// buildProduction builds pkg as make build-* does (static, -s -w,
// lambda.norpc) for goarch into dir and returns the binary's path.
func buildProduction(tb testing.TB, pkg, goarch, dir string) string {
	tb.Helper()
	return buildProductionIn(tb, moduleRoot(tb), pkg, goarch, filepath.Join(dir, goarch, filepath.Base(pkg)))
}

// buildProductionIn builds pkg of the module at root into out.
func buildProductionIn(tb testing.TB, root, pkg, goarch, out string) string {
	tb.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-tags", "lambda.norpc", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
	return out
}

func moduleRoot(tb testing.TB) string {
	tb.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || len(strings.TrimSpace(string(out))) == 0 {
		tb.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// start is one cold start: the time from exec to the first GET
// /runtime/invocation/next, and the CPU time (user and system, all threads)
// the process had used by then. The CPU time barely moves with the load of
// other processes, which the wall time does by several ms on this shared
// machine.
type start struct{ wall, cpu time.Duration }

// coldStart execs bin with a runtime API stand-in and measures its start.
// The process waits for work once it has asked for it, so the CPU time it
// used when killed is what it used until then.
func coldStart(tb testing.TB, bin string, env []string) start {
	tb.Helper()
	next := make(chan time.Time, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/runtime/invocation/next") {
			select {
			case next <- time.Now():
			default:
			}
			<-r.Context().Done() // no work: the process is killed
			return
		}
		w.WriteHeader(http.StatusAccepted) // init/error
	}))
	defer srv.Close()
	cmd := exec.Command(bin)
	cmd.Env = append(env, "AWS_LAMBDA_RUNTIME_API="+strings.TrimPrefix(srv.URL, "http://"))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case t := <-next:
		_ = cmd.Process.Kill()
		<-exited
		return start{wall: t.Sub(t0), cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
	case err := <-exited:
		tb.Fatalf("%s exited before asking for work: %v\n%s", bin, err, out.String())
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		tb.Fatalf("%s did not ask for work within 30s\n%s", bin, out.String())
	}
	return start{}
}

// BenchmarkColdStart measures, for each function and a hello-world
// aws-lambda-go bootstrap in the same run, the time from exec to the first
// request for work from the runtime API (what Lambda's Init duration
// covers), as the median of rounds run in turn, and the CPU time used by
// then (cpu-ms, median; steadier under load); and the production (arm64)
// binary sizes. x-hello is a function's median over hello's, x-floor-sdk a
// function's over floor-sdk's (what cebulk adds to the SDK), both of the
// wall time.
//
// CEBULK_COLDSTART_BASELINE=DIR also measures the three functions built
// from DIR, another copy of the module (git archive COMMIT | tar -x -C DIR),
// as base-export, base-import and base-webhook: two commits in one run.
func BenchmarkColdStart(b *testing.B) {
	awstest.Endpoint(b) // the SDK's environment, as under make test
	dir := b.TempDir()
	// Lambda sets no AWS_CA_BUNDLE; this machine does (the system's 144
	// certificates), and the SDK's configuration, default chain or
	// awsenv.FromEnv, parses it before the first request: 4–5 ms of every
	// start here that no function pays on Lambda.
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "AWS_CA_BUNDLE=") })
	env = append(env,
		"CE_BASE_URL=http://127.0.0.1:9", "CE_SECRET_ID=cebulk", "DATA_BUCKET=cebulk-bench",
		"EXPORT_FUNCTION_NAME=export", "IMPORT_FUNCTION_NAME=import",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1024", "AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_LOG_FORMAT=JSON",
	)
	type measured struct{ name, pkg, root string }
	var runs []measured
	for _, f := range functions {
		runs = append(runs, measured{f.name, f.pkg, moduleRoot(b)})
	}
	if base := os.Getenv("CEBULK_COLDSTART_BASELINE"); base != "" {
		for _, f := range functions {
			if strings.HasPrefix(f.pkg, "./functions/") {
				runs = append(runs, measured{"base-" + f.name, f.pkg, base})
			}
		}
	}
	bins := map[string]string{}
	sizes := map[string]float64{}
	for _, f := range runs {
		bins[f.name] = buildProductionIn(b, f.root, f.pkg, runtimeArch(), filepath.Join(dir, runtimeArch(), f.name))
		arm := buildProductionIn(b, f.root, f.pkg, "arm64", filepath.Join(dir, "arm64", f.name))
		st, err := os.Stat(arm)
		if err != nil {
			b.Fatal(err)
		}
		sizes[f.name] = float64(st.Size()) / 1e6
	}
	rounds := 15
	if v, err := strconv.Atoi(os.Getenv("CEBULK_COLDSTART_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	times, cpus := map[string][]time.Duration{}, map[string][]time.Duration{}
	b.ResetTimer()
	for range b.N {
		for range rounds {
			for _, f := range runs {
				fenv := append(slices.Clone(env), "AWS_LAMBDA_FUNCTION_NAME="+f.name)
				st := coldStart(b, bins[f.name], fenv)
				times[f.name] = append(times[f.name], st.wall)
				cpus[f.name] = append(cpus[f.name], st.cpu)
			}
		}
	}
	b.StopTimer()
	median := func(d []time.Duration) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[len(s)/2]
	}
	hello, floor, helloCPU := median(times["hello"]), median(times["floor-sdk"]), median(cpus["hello"])
	var lines []string
	for _, f := range runs {
		m := median(times[f.name])
		c := median(cpus[f.name])
		b.ReportMetric(float64(m.Microseconds())/1e3, f.name+"-ms")
		b.ReportMetric(float64(c.Microseconds())/1e3, f.name+"-cpu-ms")
		if f.name != "hello" {
			b.ReportMetric(float64(m)/float64(hello), f.name+"-x-hello")
		}
		if !strings.HasPrefix(f.name, "floor") && f.name != "hello" {
			b.ReportMetric(float64(m)/float64(floor), f.name+"-x-floor-sdk")
		}
		b.ReportMetric(sizes[f.name], f.name+"-arm64-MB")
		lines = append(lines, fmt.Sprintf("%s %.1f ms (%.2fx hello; CPU %.1f ms, %.2fx; %.1f MB arm64)", f.name,
			float64(m.Microseconds())/1e3, float64(m)/float64(hello), float64(c.Microseconds())/1e3, float64(c)/float64(helloCPU), sizes[f.name]))
	}
	b.Logf("cold start, median of %d: %s", rounds, strings.Join(lines, ", "))
}
