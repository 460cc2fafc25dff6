package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
)

func TestRunDispatch(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string // substring
		wantStderr string // substring
	}{
		{"no command", nil, 2, "", "usage: cebulk <command>"},
		{"help", []string{"help"}, 0, "emulator", ""},
		{"-h", []string{"-h"}, 0, "usage: cebulk <command>", ""},
		{"unknown command", []string{"frobnicate"}, 2, "", "usage: cebulk"},
		{"emulator -h", []string{"emulator", "-h"}, 0, "", "-signature-key"},
		{"emulator bad flag", []string{"emulator", "-nope"}, 2, "", "flag provided but not defined"},
		{"emulator extra argument", []string{"emulator", "now"}, 2, "", ""},
		{"emulator on all interfaces", []string{"emulator", "-addr", "0.0.0.0:0"}, 2, "", ""},
		{"emulator without host", []string{"emulator", "-addr", ":8380"}, 2, "", ""},
		{"emulator on a public address", []string{"emulator", "-addr", "192.0.2.1:0"}, 2, "", ""},
		{"emulator bad format", []string{"emulator", "-download-format", "xml"}, 2, "", ""},
		{"emulator no days", []string{"emulator", "-days", "0"}, 2, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), tc.args, &stdout, &stderr)
			if got := exitCode(err, &stderr); got != tc.wantCode {
				t.Errorf("run(%q) exit code = %d (err %v), want %d", tc.args, got, err, tc.wantCode)
			}
			if !strings.Contains(stdout.String(), tc.wantStdout) {
				t.Errorf("run(%q) stdout = %q, want it to contain %q", tc.args, stdout.String(), tc.wantStdout)
			}
			if !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Errorf("run(%q) stderr = %q, want it to contain %q", tc.args, stderr.String(), tc.wantStderr)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	var stderr bytes.Buffer
	tests := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{flag.ErrHelp, 0},
		{&usageError{errors.New("bad")}, 2},
		{errors.New("boom"), 1},
	}
	for _, tc := range tests {
		if got := exitCode(tc.err, &stderr); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
