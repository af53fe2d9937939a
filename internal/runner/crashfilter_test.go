package runner

import (
	"bytes"
	"strings"
	"testing"
)

func TestCrashFilter(t *testing.T) {
	for _, tc := range []struct {
		name, in, out, said string
	}{
		{"log lines pass", "INFO a\nruntime is not a crash\nrun\n", "INFO a\nruntime is not a crash\nrun\n", ""},
		{"a bar redrawn without newline", "\x1b[1A\rrows 10\x1b[1A\rrows 20", "\x1b[1A\rrows 10\x1b[1A\rrows 20", ""},
		{"out of memory", "INFO a\nruntime: out of memory: cannot allocate\nfatal error: out of memory\n\ngoroutine 1 [running]:\nmain.f()\n",
			"INFO a\n", "runtime: out of memory: cannot allocate\nfatal error: out of memory\n\ngoroutine 1 [running]:\nmain.f()\n"},
		{"panic", "x\npanic: boom\n\ngoroutine 7\n", "x\n", "panic: boom\n\ngoroutine 7\n"},
		{"a line that only begins like one", "pani\npanic attack\n", "pani\npanic attack\n", ""},
	} {
		// Every way of cutting the input into two writes.
		for cut := range len(tc.in) + 1 {
			var out bytes.Buffer
			f := &crashFilter{w: &out}
			f.Write([]byte(tc.in[:cut]))
			f.Write([]byte(tc.in[cut:]))
			if out.String() != tc.out || f.said.String() != tc.said || f.crashed != (tc.said != "") {
				t.Fatalf("%s, cut at %d: passed %q, kept %q (crashed %t); want %q, %q", tc.name, cut, out.String(), f.said.String(), f.crashed, tc.out, tc.said)
			}
		}
	}
	if got := crashCause("runtime: out of memory: cannot allocate 4 bytes\nfatal error: out of memory\n\ngoroutine 1", nil); !strings.HasPrefix(got, "fatal error: out of memory") {
		t.Errorf("cause %q", got)
	}
}
