package lake

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// LocalPartitions finds the partitions of t in a copy of the bucket on disk
// (dir holds the bucket's keys as paths; bucket is its name), as Athena
// would read them: every partition folder whose value matches the
// projection's format, and in it every file whose name does not start with
// "_" or "." (for a symlink table, the objects its files name, which must be
// in the same bucket). Partitions come in value order.
func LocalPartitions(dir, bucket string, t Table) ([]Partition, error) {
	root := filepath.Join(dir, filepath.FromSlash(t.Prefix))
	entries, err := os.ReadDir(root)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var parts []Partition
	for _, e := range entries {
		value, ok := strings.CutPrefix(e.Name(), t.Partition.Column+"=")
		if !e.IsDir() || !ok {
			return nil, fmt.Errorf("%s%s: not a %s= partition folder; Athena would not read it", t.Prefix, e.Name(), t.Partition.Column)
		}
		if _, err := time.Parse(t.Partition.Go, value); err != nil {
			return nil, fmt.Errorf("%s%s: %q does not match the projection format %s", t.Prefix, e.Name(), value, t.Partition.Format)
		}
		files, err := dataFiles(filepath.Join(root, e.Name()))
		if err != nil {
			return nil, err
		}
		if t.Symlink {
			if files, err = resolveSymlinks(dir, bucket, files); err != nil {
				return nil, err
			}
		}
		if len(files) > 0 {
			parts = append(parts, Partition{Value: value, Files: files})
		}
	}
	slices.SortFunc(parts, func(a, b Partition) int { return strings.Compare(a.Value, b.Value) })
	return parts, nil
}

// dataFiles lists the files under dir (recursively) Athena reads.
func dataFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir && (strings.HasPrefix(d.Name(), "_") || strings.HasPrefix(d.Name(), ".")) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.IsDir() {
			files = append(files, path)
		}
		return nil
	})
	return files, err
}

func resolveSymlinks(dir, bucket string, links []string) ([]string, error) {
	var files []string
	for _, link := range links {
		f, err := os.Open(link)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" {
				continue
			}
			key, ok := strings.CutPrefix(line, "s3://"+bucket+"/")
			if !ok {
				f.Close()
				return nil, fmt.Errorf("%s: %q is not an object of s3://%s/", link, line, bucket)
			}
			files = append(files, filepath.Join(dir, filepath.FromSlash(key)))
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// With returns the query body as a query over table t named by its Glue
// name: WITH "<name>" AS (<DuckDBSelect>) <query>. A table without
// partitions reads as empty, with its columns.
func (t Table) With(parts []Partition, query string) string {
	return "WITH " + ident(t.Name) + " AS (" + t.selectOrEmpty(parts) + ") " + query
}

func (t Table) selectOrEmpty(parts []Partition) string {
	if len(parts) > 0 {
		return t.DuckDBSelect(parts)
	}
	cols := make([]string, 0, len(t.Columns)+1)
	for _, c := range t.Columns {
		cols = append(cols, "CAST(NULL AS "+c.DuckDBType()+") AS "+ident(c.Name))
	}
	cols = append(cols, "CAST(NULL AS VARCHAR) AS "+ident(t.Partition.Column))
	return "SELECT " + strings.Join(cols, ", ") + " WHERE false"
}
