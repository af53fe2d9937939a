package logging

import (
	"bytes"
	"log/slog"
	"testing"
)

func TestLinesCarryNoControlCharacter(t *testing.T) {
	for msg, want := range map[string]string{
		"plain name":              "INFO plain name\n",
		"two\nlines":              "INFO two; lines\n",
		"cr\rover":                `INFO cr\rover` + "\n",
		"\x1b[2Jcleared":          `INFO \x1b[2Jcleared` + "\n",
		"bell\a tab\t del\x7f":    `INFO bell\a tab\t del\x7f` + "\n",
		"c1 \u009b31m":            `INFO c1 \u009b31m` + "\n",
		"accents é 日本 \u00a0nbsp": "INFO accents é 日本 \u00a0nbsp\n",
	} {
		var out bytes.Buffer
		New(&out, slog.LevelInfo).Info(msg)
		if out.String() != want {
			t.Errorf("%q logged as %q, want %q", msg, out.String(), want)
		}
	}
	var out bytes.Buffer
	New(&out, slog.LevelInfo).Info("attr", "table", "a\rb")
	if want := `INFO attr table=a\rb` + "\n"; out.String() != want {
		t.Errorf("attribute logged as %q, want %q", out.String(), want)
	}
}

func TestCleanLines(t *testing.T) {
	var out bytes.Buffer
	w := CleanLines(&out)
	for _, s := range []string{"INFO stream a\rb: readable\n", "ERROR x\x1b[2J\nINFO two\n", "no end"} {
		if n, err := w.Write([]byte(s)); err != nil || n != len(s) {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if want := "INFO stream a\\rb: readable\nERROR x\\x1b[2J\nINFO two\nno end"; out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}
