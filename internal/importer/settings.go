package importer

import (
	"fmt"
	"strconv"
)

// MaxChunkRecords bounds IMPORT_CHUNK_RECORDS: one CE job per chunk, and CE
// makes one Mixpanel call per record, so a chunk past a million records
// would outlive CE's job retention.
const MaxChunkRecords = 1_000_000

// ParseChunkRecords reads a chunk size ("" is DefaultChunkRecords), the same
// way for ImportFunction's environment and `cebulk import`'s flag. Its error
// says what is wanted; callers prefix the variable or flag name.
func ParseChunkRecords(s string) (int, error) {
	if s == "" {
		return DefaultChunkRecords, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxChunkRecords {
		return 0, fmt.Errorf("%q: want a whole number of records from 1 to %d", s, MaxChunkRecords)
	}
	return n, nil
}
