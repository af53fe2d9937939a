// Package schedule computes when an integration's jobs run (README,
// "Runner"): an
// interval frequency with an optional anchor time, or a 6-field Quartz cron
// expression, always in UTC. Callers pass the time: there is no clock here.
package schedule

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule says when the next job after a given time starts.
type Schedule interface {
	// Next is the first start strictly after t.
	Next(t time.Time) time.Time
	String() string
}

// Spec is a schedule as an integration file writes it: Frequency (with an
// optional Anchor) or Cron, not both.
type Spec struct {
	Frequency string `yaml:"frequency"`
	Anchor    string `yaml:"anchor"`
	Cron      string `yaml:"cron"`
}

// minAnchoredFrequency is the shortest frequency an anchor may use.
const minAnchoredFrequency = time.Hour

// Parse checks a Spec and returns its schedule.
func Parse(s Spec) (Schedule, error) {
	switch {
	case s.Cron != "" && (s.Frequency != "" || s.Anchor != ""):
		return nil, errors.New("schedule: give either cron or frequency (with an optional anchor), not both")
	case s.Cron != "":
		return ParseQuartz(s.Cron)
	case s.Frequency == "":
		if s.Anchor != "" {
			return nil, errors.New("schedule: anchor needs a frequency")
		}
		return nil, errors.New("schedule: give a frequency (e.g. 30m, 1h, 24h) or a cron expression")
	}
	every, err := time.ParseDuration(s.Frequency)
	if err != nil || every <= 0 {
		return nil, fmt.Errorf("schedule: frequency %q is not a positive duration such as 30m, 1h or 24h", s.Frequency)
	}
	if s.Anchor == "" {
		return Interval{Every: every}, nil
	}
	if every < minAnchoredFrequency {
		return nil, fmt.Errorf("schedule: an anchored frequency must be at least %s, not %s", minAnchoredFrequency, every)
	}
	anchor, err := time.Parse(time.RFC3339, s.Anchor)
	if err != nil {
		return nil, fmt.Errorf("schedule: anchor %q is not an RFC 3339 time such as 2024-06-01T02:30:00Z", s.Anchor)
	}
	return Interval{Every: every, Anchor: anchor.UTC(), Anchored: true}, nil
}

// Interval runs every Every. Anchored, starts fall on Anchor + k × Every
// (k may be negative); otherwise every Every from whenever the first job ran.
type Interval struct {
	Every    time.Duration
	Anchor   time.Time
	Anchored bool
}

// Next is the first start after t.
func (i Interval) Next(t time.Time) time.Time {
	if !i.Anchored {
		return t.Add(i.Every)
	}
	k := t.Sub(i.Anchor) / i.Every
	next := i.Anchor.Add(k * i.Every)
	for !next.After(t) {
		next = next.Add(i.Every)
	}
	for next.Add(-i.Every).After(t) {
		next = next.Add(-i.Every)
	}
	return next.UTC()
}

func (i Interval) String() string {
	if i.Anchored {
		return fmt.Sprintf("every %s anchored at %s", i.Every, i.Anchor.Format(time.RFC3339))
	}
	return "every " + i.Every.String()
}

// Quartz is a 6-field Quartz cron schedule in UTC.
type Quartz struct {
	text     string
	schedule cron.Schedule
}

// Next is the first start after t.
func (q Quartz) Next(t time.Time) time.Time { return q.schedule.Next(t.UTC()) }

func (q Quartz) String() string { return "cron " + q.text }

// ParseQuartz reads `sec min hour day-of-month month day-of-week` as Quartz
// does: `?` in exactly one day field, days of week 1 = SUN … 7 = SAT. L, W,
// # and a seventh (year) field are refused, each with what is wrong.
func ParseQuartz(expr string) (Schedule, error) {
	fields := strings.Fields(expr)
	switch {
	case len(fields) == 7:
		return nil, fmt.Errorf("cron %q: the year field is not supported; give 6 fields: sec min hour day-of-month month day-of-week", expr)
	case len(fields) != 6:
		return nil, fmt.Errorf("cron %q: %d fields; give 6: sec min hour day-of-month month day-of-week", expr, len(fields))
	}
	for i, f := range fields {
		if bad := quartzOperator(f, i); bad != "" {
			return nil, fmt.Errorf("cron %q: %q in field %d is not supported (no L, W or # expressions)", expr, bad, i+1)
		}
	}
	dom, dow := fields[3], fields[5]
	if (dom == "?") == (dow == "?") {
		return nil, fmt.Errorf("cron %q: put ? in exactly one of day-of-month (%s) and day-of-week (%s)", expr, dom, dow)
	}
	if dow != "?" {
		translated, err := quartzDaysOfWeek(dow)
		if err != nil {
			return nil, fmt.Errorf("cron %q: day-of-week %w", expr, err)
		}
		fields[5] = translated
	}
	parser := cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)
	s, err := parser.Parse(strings.Join(fields, " "))
	if err != nil {
		return nil, fmt.Errorf("cron %q: %w", expr, err)
	}
	// The parser answers the zero time when no date within five years
	// matches; a Quartz expression such as 31 February "will never fire".
	// Any five years hold every date a 6-field expression can name (29
	// February included), so one look from a fixed point tells.
	if s.Next(neverFiresCheckFrom).IsZero() {
		return nil, fmt.Errorf("cron %q: matches no date, so it would never fire", expr)
	}
	return Quartz{text: expr, schedule: s}, nil
}

var neverFiresCheckFrom = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)

// Quartz's month and day names, which contain the letters of the L, W and
// # operators (JUL, WED…).
var (
	monthNames = []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}
	dayNames   = []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}
)

// quartzOperator returns the L, W or # operator a field uses, or "": each
// part of a list, range or step is a number, *, ?, or a name the field
// allows (months in field 5, days in field 6).
func quartzOperator(field string, index int) string {
	for _, part := range strings.FieldsFunc(strings.ToUpper(field), func(r rune) bool { return r == ',' || r == '-' || r == '/' }) {
		if index == 4 && slices.Contains(monthNames, part) || index == 5 && slices.Contains(dayNames, part) {
			continue
		}
		for _, op := range []string{"L", "W", "#"} {
			if strings.Contains(part, op) {
				return op
			}
		}
	}
	return ""
}

// quartzDaysOfWeek renumbers Quartz days (1 = SUN … 7 = SAT) for the parser,
// which counts from 0 = SUN. Names and * pass unchanged.
func quartzDaysOfWeek(field string) (string, error) {
	var out strings.Builder
	num := strings.Builder{}
	flush := func(isStep bool) error {
		if num.Len() == 0 {
			return nil
		}
		n, _ := strconv.Atoi(num.String())
		num.Reset()
		if isStep {
			out.WriteString(strconv.Itoa(n))
			return nil
		}
		if n < 1 || n > 7 {
			return fmt.Errorf("%q: days of week are 1 (SUN) to 7 (SAT)", field)
		}
		out.WriteString(strconv.Itoa(n - 1))
		return nil
	}
	afterSlash := false
	for _, r := range field {
		if r >= '0' && r <= '9' {
			num.WriteRune(r)
			continue
		}
		if err := flush(afterSlash); err != nil {
			return "", err
		}
		afterSlash = r == '/'
		if r == ',' || r == '-' {
			afterSlash = false
		}
		out.WriteRune(r)
	}
	if err := flush(afterSlash); err != nil {
		return "", err
	}
	return out.String(), nil
}
