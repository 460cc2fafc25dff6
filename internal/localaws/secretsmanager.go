// Package localaws embeds the AWS services the local demo needs in one
// process, with nothing to install: S3 (the gofakes3 library, in memory or
// on disk) and a small Secrets Manager that speaks the real JSON 1.1 wire
// protocol, so the unchanged SDK clients of the functions talk to them
// through AWS_ENDPOINT_URL.
//
// Tests use moto (see internal/awstest); this package is for `cebulk demo`.
package localaws

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// SecretsManager is an in-memory Secrets Manager: CreateSecret,
// GetSecretValue, PutSecretValue, DescribeSecret and DeleteSecret, addressed
// by name or ARN.
type SecretsManager struct {
	mu      sync.Mutex
	secrets map[string]*secret // by name
	region  string
}

type secret struct {
	name, arn, value, version string
	created                   time.Time
}

// NewSecretsManager returns an empty Secrets Manager for region.
func NewSecretsManager(region string) *SecretsManager {
	return &SecretsManager{secrets: map[string]*secret{}, region: region}
}

// Put creates or replaces a secret's value and returns its ARN.
func (m *SecretsManager) Put(name, value string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.secrets[name]
	if !ok {
		s = &secret{name: name, arn: fmt.Sprintf("arn:aws:secretsmanager:%s:123456789012:secret:%s-AbCdEf", m.region, name), created: time.Now()}
		m.secrets[name] = s
	}
	s.value = value
	s.version = fmt.Sprintf("v%d", time.Now().UnixNano())
	return s.arn
}

func (m *SecretsManager) find(id string) *secret {
	if s, ok := m.secrets[id]; ok {
		return s
	}
	for _, s := range m.secrets {
		if s.arn == id {
			return s
		}
	}
	return nil
}

// ServeHTTP implements the JSON 1.1 protocol (X-Amz-Target: secretsmanager.<Op>).
func (m *SecretsManager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "secretsmanager.")
	if r.Method != http.MethodPost || !ok {
		awsError(w, http.StatusBadRequest, "UnknownOperationException", "unknown operation")
		return
	}
	var in struct {
		SecretID     string `json:"SecretId"`
		Name         string `json:"Name"`
		SecretString string `json:"SecretString"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&in); err != nil {
		awsError(w, http.StatusBadRequest, "SerializationException", "malformed request")
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch op {
	case "CreateSecret":
		if in.Name == "" {
			awsError(w, http.StatusBadRequest, "InvalidParameterException", "Name is required")
			return
		}
		if m.secrets[in.Name] != nil {
			awsError(w, http.StatusBadRequest, "ResourceExistsException", "the secret "+in.Name+" already exists")
			return
		}
		m.mu.Unlock()
		arn := m.Put(in.Name, in.SecretString)
		m.mu.Lock()
		s := m.secrets[in.Name]
		writeJSON(w, map[string]any{"ARN": arn, "Name": s.name, "VersionId": s.version})
	case "GetSecretValue", "DescribeSecret", "PutSecretValue", "DeleteSecret":
		s := m.find(in.SecretID)
		if s == nil {
			awsError(w, http.StatusBadRequest, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
			return
		}
		switch op {
		case "GetSecretValue":
			writeJSON(w, map[string]any{"ARN": s.arn, "Name": s.name, "SecretString": s.value, "VersionId": s.version,
				"VersionStages": []string{"AWSCURRENT"}, "CreatedDate": float64(s.created.Unix())})
		case "DescribeSecret":
			writeJSON(w, map[string]any{"ARN": s.arn, "Name": s.name, "CreatedDate": float64(s.created.Unix())})
		case "PutSecretValue":
			s.value = in.SecretString
			s.version = fmt.Sprintf("v%d", time.Now().UnixNano())
			writeJSON(w, map[string]any{"ARN": s.arn, "Name": s.name, "VersionId": s.version, "VersionStages": []string{"AWSCURRENT"}})
		case "DeleteSecret":
			delete(m.secrets, s.name)
			writeJSON(w, map[string]any{"ARN": s.arn, "Name": s.name, "DeletionDate": float64(time.Now().Unix())})
		}
	default:
		awsError(w, http.StatusBadRequest, "UnknownOperationException", "operation "+op+" is not supported by the local Secrets Manager")
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(v)
}

func awsError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", typ)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": msg})
}
