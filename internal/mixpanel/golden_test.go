package mixpanel

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cebulk/cebulk/internal/recordio"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// TestGolden validates the sample files in testdata as the importer does
// (recordio, FromCSVRow for CSV, Normalize) and compares what would be
// sent and rejected with testdata/<file>.golden. Refresh with
// go test ./internal/mixpanel -run TestGolden -update.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		if strings.HasSuffix(file, ".golden") {
			continue
		}
		t.Run(filepath.Base(file), func(t *testing.T) {
			obj := Object(strings.SplitN(filepath.Base(file), ".", 2)[0])
			if obj != Activities && obj != Users {
				t.Fatalf("%s: the name must start with %q or %q", file, Activities, Users)
			}
			got := report(t, obj, file)
			golden := file + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("%s mismatch (-want +got):\n%s", golden, diff)
			}
		})
	}
}

// report renders, line by line, what happens to each row of file.
func report(t *testing.T, obj Object, file string) string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b strings.Builder
	rd, err := recordio.Open(f, file, recordio.Options{CSVShape: obj.CSVShape})
	if err != nil {
		fmt.Fprintf(&b, "refused: %v\n", err)
		return b.String()
	}
	fmt.Fprintf(&b, "format: %s\n", rd.Format())
	for {
		it, err := rd.Next()
		if err == io.EOF {
			b.WriteString("end\n")
			break
		}
		var fe *recordio.FileError
		if errors.As(err, &fe) {
			fmt.Fprintf(&b, "stopped: %v\n", fe)
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if it.Err != nil {
			var re *recordio.RowError
			errors.As(it.Err, &re)
			fmt.Fprintf(&b, "%d rejected: %s\n", it.Line, re.Reason)
			continue
		}
		out, err := Normalize(obj, it.Record, now)
		if err != nil {
			fmt.Fprintf(&b, "%d rejected: %v\n", it.Line, err)
			continue
		}
		fmt.Fprintf(&b, "%d sent: %s\n", it.Line, out)
	}
	st := rd.Stats()
	fmt.Fprintf(&b, "stats: %d records, %d row errors, %d blank rows, %d bytes\n", st.Records, st.RowErrors, st.BlankRows, st.BytesRead)
	return b.String()
}
