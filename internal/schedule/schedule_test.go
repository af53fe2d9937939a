package schedule

import (
	"strings"
	"testing"
	"time"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestNext(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		now  string
		want []string // the next starts, each after the previous
	}{
		{"plain interval", Spec{Frequency: "30m"}, "2024-06-01T10:07:00Z", []string{"2024-06-01T10:37:00Z", "2024-06-01T11:07:00Z"}},
		{"anchored hourly", Spec{Frequency: "1h", Anchor: "2024-01-01T00:15:00Z"}, "2024-06-01T10:07:00Z",
			[]string{"2024-06-01T10:15:00Z", "2024-06-01T11:15:00Z"}},
		{"anchored exactly on a start", Spec{Frequency: "6h", Anchor: "2024-01-01T02:00:00Z"}, "2024-06-01T08:00:00Z",
			[]string{"2024-06-01T14:00:00Z", "2024-06-01T20:00:00Z"}},
		{"anchor in the future", Spec{Frequency: "24h", Anchor: "2030-01-01T03:30:00+02:00"}, "2024-06-01T10:00:00Z",
			[]string{"2024-06-02T01:30:00Z", "2024-06-03T01:30:00Z"}},
		{"quartz every 15 minutes", Spec{Cron: "0 0/15 * * * ?"}, "2024-06-01T10:07:00Z",
			[]string{"2024-06-01T10:15:00Z", "2024-06-01T10:30:00Z"}},
		{"quartz weekdays 1 = SUN", Spec{Cron: "0 30 2 ? * 2-6"}, "2024-06-01T10:00:00Z", // a Saturday
			[]string{"2024-06-03T02:30:00Z", "2024-06-04T02:30:00Z", "2024-06-05T02:30:00Z", "2024-06-06T02:30:00Z", "2024-06-07T02:30:00Z", "2024-06-10T02:30:00Z"}},
		{"quartz 1 and 7 are the weekend", Spec{Cron: "0 0 12 ? * 1,7"}, "2024-06-03T00:00:00Z", // a Monday
			[]string{"2024-06-08T12:00:00Z", "2024-06-09T12:00:00Z", "2024-06-15T12:00:00Z"}},
		{"quartz day names", Spec{Cron: "0 0 6 ? * MON,WED"}, "2024-06-01T00:00:00Z", []string{"2024-06-03T06:00:00Z", "2024-06-05T06:00:00Z"}},
		{"quartz day of month", Spec{Cron: "0 0 0 1 * ?"}, "2024-06-01T00:00:00Z", []string{"2024-07-01T00:00:00Z", "2024-08-01T00:00:00Z"}},
		{"quartz month names", Spec{Cron: "0 0 12 1 JUL ?"}, "2024-06-01T00:00:00Z", []string{"2024-07-01T12:00:00Z", "2025-07-01T12:00:00Z"}},
		{"quartz month name list", Spec{Cron: "0 0 12 1 APR,JUL,DEC ?"}, "2024-06-01T00:00:00Z", []string{"2024-07-01T12:00:00Z", "2024-12-01T12:00:00Z", "2025-04-01T12:00:00Z"}},
		{"quartz month name range", Spec{Cron: "0 0 0 15 jun-aug ?"}, "2024-06-01T00:00:00Z", []string{"2024-06-15T00:00:00Z", "2024-07-15T00:00:00Z", "2024-08-15T00:00:00Z", "2025-06-15T00:00:00Z"}},
		{"quartz month name step", Spec{Cron: "0 0 0 1 JAN/4 ?"}, "2024-06-01T00:00:00Z", []string{"2024-09-01T00:00:00Z", "2025-01-01T00:00:00Z", "2025-05-01T00:00:00Z"}},
		{"quartz day name range", Spec{Cron: "0 0 8 ? * TUE-THU"}, "2024-06-01T00:00:00Z", []string{"2024-06-04T08:00:00Z", "2024-06-05T08:00:00Z", "2024-06-06T08:00:00Z", "2024-06-11T08:00:00Z"}},
		{"quartz 29 February", Spec{Cron: "0 0 0 29 2 ?"}, "2024-06-01T00:00:00Z", []string{"2028-02-29T00:00:00Z"}},
		{"quartz in UTC whatever the input zone", Spec{Cron: "0 0 9 * * ?"}, "2024-06-01T10:00:00+02:00", []string{"2024-06-01T09:00:00Z", "2024-06-02T09:00:00Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			now := at(tt.now)
			for _, w := range tt.want {
				next := s.Next(now)
				if !next.Equal(at(w)) {
					t.Fatalf("%s: Next(%s) = %s, want %s", s, now.UTC().Format(time.RFC3339), next.UTC().Format(time.RFC3339), w)
				}
				now = next
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		spec Spec
		want string
	}{
		{Spec{}, "give a frequency"},
		{Spec{Frequency: "soon"}, "not a positive duration"},
		{Spec{Frequency: "-1h"}, "not a positive duration"},
		{Spec{Frequency: "30m", Anchor: "2024-01-01T00:00:00Z"}, "at least 1h0m0s"},
		{Spec{Frequency: "1h", Anchor: "tomorrow"}, "not an RFC 3339 time"},
		{Spec{Anchor: "2024-01-01T00:00:00Z"}, "anchor needs a frequency"},
		{Spec{Frequency: "1h", Cron: "0 0 * * * ?"}, "not both"},
		{Spec{Cron: "0 0 * * *"}, "5 fields; give 6"},
		{Spec{Cron: "0 0 0 * * ? 2025"}, "year field is not supported"},
		{Spec{Cron: "0 0 0 L * ?"}, `"L" in field 4`},
		{Spec{Cron: "0 0 0 15W * ?"}, `"W" in field 4`},
		{Spec{Cron: "0 0 0 ? * 6#3"}, `"#" in field 6`},
		{Spec{Cron: "0 0 0 ? * 6L"}, `"L" in field 6`},
		{Spec{Cron: "0 0 0 * * *"}, "exactly one of day-of-month"},
		{Spec{Cron: "0 0 0 ? * ?"}, "exactly one of day-of-month"},
		{Spec{Cron: "0 0 0 ? * 0"}, "1 (SUN) to 7 (SAT)"},
		{Spec{Cron: "0 0 0 ? * 8"}, "1 (SUN) to 7 (SAT)"},
		{Spec{Cron: "0 61 0 * * ?"}, "end of range (61) above maximum (59)"},
		{Spec{Cron: "0 0 0 LW * ?"}, `"L" in field 4`},
		{Spec{Cron: "0 0 0 L-3 * ?"}, `"L" in field 4`},
		{Spec{Cron: "0 0 0 ? * SAT#2"}, `"#" in field 6`},
		{Spec{Cron: "0 0 0 ? JUL FRIL"}, `"L" in field 6`},
		{Spec{Cron: "0 0 0 1W JUL ?"}, `"W" in field 4`},
		{Spec{Cron: "0 0 0 1 JULY ?"}, `"L" in field 5`},
		{Spec{Cron: "0 0 12 31 2 ?"}, "never fire"},
		{Spec{Cron: "0 0 12 30 FEB ?"}, "never fire"},
		{Spec{Cron: "0 0 12 31 APR,JUN,SEP,NOV ?"}, "never fire"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.spec)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%+v) error = %v, want it to contain %q", tt.spec, err, tt.want)
		}
	}
}

func FuzzParseQuartz(f *testing.F) {
	for _, s := range []string{"0 0/15 * * * ?", "0 30 2 ? * 2-6", "0 0 12 ? * 1,7", "0 0 0 L * ?", "* * * * * * *", "0 0 0 ? * 1/2", "0 0 0 ? * SUN-SAT"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		s, err := ParseQuartz(expr)
		if err != nil {
			return
		}
		now := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
		if next := s.Next(now); !next.IsZero() && !next.After(now) {
			t.Fatalf("%q: Next(%s) = %s is not after it", expr, now, next)
		}
	})
}
