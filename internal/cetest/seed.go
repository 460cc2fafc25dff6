package cetest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
)

// seedRecords turns the argument of Seed into compact JSON records.
func seedRecords(records any) ([]json.RawMessage, error) {
	switch v := records.(type) {
	case nil:
		return nil, nil
	case []map[string]any:
		return marshalEach(v)
	case []any:
		return marshalEach(v)
	case []json.RawMessage:
		out := make([]json.RawMessage, len(v))
		for i, raw := range v {
			if !json.Valid(raw) {
				return nil, fmt.Errorf("record %d is not valid JSON", i)
			}
			out[i] = compact(raw)
		}
		return out, nil
	case json.RawMessage:
		return splitJSON(v)
	case []byte:
		return splitJSON(v)
	case string:
		return splitJSON([]byte(v))
	}
	return nil, fmt.Errorf("unsupported records type %T", records)
}

func marshalEach[T any](xs []T) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, len(xs))
	for i, x := range xs {
		raw, err := json.Marshal(x)
		if err != nil {
			return nil, fmt.Errorf("record %d: %v", i, err)
		}
		out[i] = raw
	}
	return out, nil
}

// splitJSON splits a JSON array or JSON lines into records.
func splitJSON(data []byte) ([]json.RawMessage, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, nil
	}
	if data[0] == '[' {
		var out []json.RawMessage
		if err := json.Unmarshal(data, &out); err != nil {
			return nil, err
		}
		for i := range out {
			out[i] = compact(out[i])
		}
		return out, nil
	}
	var out []json.RawMessage
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if !json.Valid(line) {
			return nil, fmt.Errorf("record %d is not valid JSON", len(out)+1)
		}
		out = append(out, compact(line))
	}
	return out, sc.Err()
}
